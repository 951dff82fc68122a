/**
 * The official `openai` npm SDK against a running Tollgate gateway (mock upstream behind it).
 *
 * Covers: plain chat (content, usage, x-request-id), streaming with `stream_options.include_usage` (content
 * from deltas, exactly one trailing usage chunk with `choices: []`), streaming without it (no usage at all),
 * embeddings (string and list input), `models.list()` for an all-models key and a restricted key, and the
 * SDK's typed errors for a wrong key (AuthenticationError), an unknown model (NotFoundError) and a model the
 * key may not use (PermissionDeniedError).
 *
 * Run (after `cargo build -p tollgate-gateway -p tollgate-tests` and `npm ci --prefix tests/node`):
 *     node --test tests/node/
 * Binaries default to target/debug/{tollgate,tollgate-mock-upstream}; TOLLGATE_BIN / TOLLGATE_MOCK_BIN
 * override them. The Python SDK suite: `.venv/bin/pytest tests/python -q`.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import OpenAI from 'openai';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GATEWAY_BIN = process.env.TOLLGATE_BIN || join(REPO, 'target', 'debug', 'tollgate');
const MOCK_BIN = process.env.TOLLGATE_MOCK_BIN || join(REPO, 'target', 'debug', 'tollgate-mock-upstream');

const FULL_KEY = 'tg-node-sdk-full-0123456789abcdefghijklmnopq';
const LIMITED_KEY = 'tg-node-sdk-limited-0123456789abcdefghijklm';
const MODELS = {
  'gpt-4o-mini': 'gpt-4o-mini',
  'always-429': 'gpt?status=429&retry_after=0',
  'text-embedding-3-small': 'text-embedding-3-small',
};

// Mock upstream: prompt_tokens = words of all message contents + 3; 4 chunks "tok0 ".."tok3 " by default and
// completion_tokens = chunks. Embeddings: prompt_tokens = words, 8-dimensional vectors.
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Say hello to the gateway' },
];
const PROMPT_TOKENS = 3 + 5 + 3;
const CONTENT = 'tok0 tok1 tok2 tok3 ';

let tmp;
let mock;
let gateway;
let gatewayLog = '';
let baseURL;
let mockURL;

function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

async function stop(proc, signal) {
  if (proc.exitCode !== null || proc.signalCode !== null) return { code: proc.exitCode, signal: proc.signalCode };
  const exited = once(proc, 'exit');
  proc.kill(signal);
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  const [code, sig] = await exited;
  clearTimeout(timer);
  return { code, signal: sig };
}

function client(apiKey = FULL_KEY, options = {}) {
  return new OpenAI({ apiKey, baseURL, maxRetries: 0, ...options });
}

before(async () => {
  for (const bin of [GATEWAY_BIN, MOCK_BIN]) {
    if (!existsSync(bin)) throw new Error(`${bin} not found: run cargo build -p tollgate-gateway -p tollgate-tests`);
  }
  tmp = mkdtempSync(join(tmpdir(), 'tollgate-node-'));

  mock = spawn(MOCK_BIN, ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const lines = createInterface({ input: mock.stdout });
  const [first] = await Promise.race([
    once(lines, 'line'),
    once(mock, 'exit').then(([code]) => {
      throw new Error(`mock upstream exited with ${code}`);
    }),
  ]);
  assert.match(first, /^listening on 127\.0\.0\.1:\d+$/);
  const mockPort = Number(first.split(':').pop());
  mockURL = `http://127.0.0.1:${mockPort}`;

  const port = await freePort();
  const sha = createHash('sha256').update(FULL_KEY).digest('hex');
  const config = [
    '[server]',
    `listen = "127.0.0.1:${port}"`,
    '[store]',
    `path = "${join(tmp, 'usage.db')}"`,
    '[providers.mock]',
    'kind = "openai-compatible"',
    `base_url = "${mockURL}/openai/v1"`,
    'api_keys = ["sk-upstream-test"]',
    ...Object.entries(MODELS).flatMap(([name, upstream]) => [
      `[models."${name}"]`,
      `deployments = [{ provider = "mock", model = "${upstream}" }]`,
    ]),
    '[keys.full]',
    'tenant = "acme"',
    'team = "search"',
    `sha256 = "${sha}"`,
    'models = ["*"]',
    '[keys.limited]',
    'tenant = "acme"',
    'team = "ads"',
    'key_env = "TOLLGATE_NODE_LIMITED_KEY"',
    'models = ["gpt-4o-mini"]',
  ].join('\n');
  const configPath = join(tmp, 'tollgate.toml');
  writeFileSync(configPath, config + '\n');

  gateway = spawn(GATEWAY_BIN, ['--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TOLLGATE_NODE_LIMITED_KEY: LIMITED_KEY, TOLLGATE_LOG: 'info' },
  });
  gateway.stdout.on('data', (d) => (gatewayLog += d));
  gateway.stderr.on('data', (d) => (gatewayLog += d));

  const origin = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (gateway.exitCode !== null) throw new Error(`gateway exited with ${gateway.exitCode}:\n${gatewayLog}`);
    try {
      const r = await fetch(`${origin}/healthz`);
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`gateway not healthy after 15s:\n${gatewayLog}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  baseURL = `${origin}/v1`;
});

after(async () => {
  const results = [];
  if (gateway) results.push(await stop(gateway, 'SIGTERM'));
  if (mock) await stop(mock, 'SIGINT'); // the mock exits cleanly on SIGINT only
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (gateway) assert.deepEqual(results[0], { code: 0, signal: null }, `gateway did not exit 0 on SIGTERM:\n${gatewayLog}`);
});

test('chat completion: content, usage and x-request-id', async () => {
  const { data: completion, request_id } = await client()
    .chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, user: 'node-user' })
    .withResponse();
  assert.equal(completion.object, 'chat.completion');
  assert.equal(completion.choices.length, 1);
  assert.equal(completion.choices[0].message.role, 'assistant');
  assert.equal(completion.choices[0].message.content, CONTENT);
  assert.equal(completion.choices[0].finish_reason, 'stop');
  assert.deepEqual(
    [completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens],
    [PROMPT_TOKENS, 4, PROMPT_TOKENS + 4],
  );
  assert.match(request_id ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.equal(completion._request_id, request_id);
});

test('streaming with include_usage: deltas, then exactly one usage chunk with empty choices', async () => {
  const stream = await client().chat.completions.create({
    model: 'gpt-4o-mini',
    messages: MESSAGES,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);

  assert.ok(chunks.length > 1);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(content, CONTENT);
  const finish = chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean);
  assert.deepEqual(finish, ['stop']);

  const withUsage = chunks.filter((c) => c.usage != null);
  assert.equal(withUsage.length, 1, 'expected exactly one chunk with usage');
  const last = chunks.at(-1);
  assert.equal(withUsage[0], last, 'the usage chunk must come last');
  assert.deepEqual(last.choices, []);
  assert.deepEqual(
    [last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens],
    [PROMPT_TOKENS, 4, PROMPT_TOKENS + 4],
  );
  assert.ok(chunks.slice(0, -1).every((c) => c.choices.length > 0));
});

test('streaming without include_usage: no chunk carries usage', async () => {
  const stream = await client().chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Count please [mock:chunks=3]' }],
    stream: true,
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'tok0 tok1 tok2 ');
  assert.deepEqual(
    chunks.filter((c) => c.usage != null),
    [],
  );
  assert.ok(chunks.every((c) => c.choices.length > 0), 'a usage-only chunk reached the client');
});

test('embeddings: single string and list input', async () => {
  const c = client();
  // encoding_format is explicit: the SDK's default asks for base64, which the mock upstream does not produce
  // (see the base64 pass-through test below).
  const one = await c.embeddings.create({
    model: 'text-embedding-3-small',
    input: 'hello tollgate world',
    encoding_format: 'float',
  });
  assert.equal(one.object, 'list');
  assert.equal(one.data.length, 1);
  assert.equal(one.data[0].index, 0);
  assert.equal(one.data[0].embedding.length, 8);
  assert.ok(one.data[0].embedding.every((x) => typeof x === 'number' && x >= 0 && x <= 1));
  assert.deepEqual([one.usage.prompt_tokens, one.usage.total_tokens], [3, 3]);

  const many = await c.embeddings.create({
    model: 'text-embedding-3-small',
    input: ['first text', 'the second text', 'third'],
    encoding_format: 'float',
  });
  assert.deepEqual(
    many.data.map((d) => d.index),
    [0, 1, 2],
  );
  assert.ok(many.data.every((d) => d.embedding.length === 8));
  assert.equal(new Set(many.data.map((d) => d.embedding.join(','))).size, 3);
  assert.equal(many.usage.prompt_tokens, 6);
});

test("embeddings: the SDK's default encoding_format reaches the upstream unchanged", async () => {
  const marker = `base64-probe-${Date.now()}`;
  await fetch(`${mockURL}/__mock/requests`, { method: 'DELETE' });
  // The mock answers floats whatever was asked, so the SDK's base64 decoding of the answer is not checked.
  await client().embeddings.create({ model: 'text-embedding-3-small', input: marker });
  const recorded = await (await fetch(`${mockURL}/__mock/requests`)).json();
  const mine = recorded.filter((r) => r.body.input === marker);
  assert.equal(mine.length, 1);
  assert.equal(mine[0].path, '/openai/v1/embeddings');
  assert.equal(mine[0].body.encoding_format, 'base64');
  assert.equal(mine[0].body.model, 'text-embedding-3-small');
  // The upstream sees the provider's key, never the client's virtual key.
  const auth = Object.fromEntries(mine[0].headers)['authorization'];
  assert.equal(auth, 'Bearer sk-upstream-test');
});

test('models.list: all configured models for a * key, the allowed subset for a restricted key', async () => {
  const all = [];
  for await (const m of client().models.list()) all.push(m);
  assert.deepEqual(all.map((m) => m.id).sort(), Object.keys(MODELS).sort());
  assert.ok(all.every((m) => m.object === 'model'));

  const limited = [];
  for await (const m of client(LIMITED_KEY).models.list()) limited.push(m);
  assert.deepEqual(
    limited.map((m) => m.id),
    ['gpt-4o-mini'],
  );
});

test('wrong key: AuthenticationError (401)', async () => {
  const c = client('tg-not-a-configured-key');
  await assert.rejects(c.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES }), (err) => {
    assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, 401);
    assert.equal(err.code, 'invalid_api_key');
    return true;
  });
  await assert.rejects(c.models.list(), OpenAI.AuthenticationError);
});

test('unknown model: NotFoundError (404); restricted key: PermissionDeniedError (403)', async () => {
  await assert.rejects(
    client().chat.completions.create({ model: 'no-such-model', messages: MESSAGES }),
    (err) => err instanceof OpenAI.NotFoundError && err.status === 404 && err.message.includes('no-such-model'),
  );
  await assert.rejects(
    client(LIMITED_KEY).embeddings.create({ model: 'text-embedding-3-small', input: 'x', encoding_format: 'float' }),
    (err) => err instanceof OpenAI.PermissionDeniedError && err.status === 403 && typeof err.requestID === 'string',
  );
});

test('upstream 429: RateLimitError with retry-after passed on', async () => {
  await assert.rejects(client().chat.completions.create({ model: 'always-429', messages: MESSAGES }), (err) => {
    assert.ok(err instanceof OpenAI.RateLimitError, `got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, 429);
    assert.equal(err.headers.get('retry-after'), '0');
    return true;
  });
});
