"""Fixtures that run a real Tollgate gateway in front of the mock upstream, for the official `openai`,
`anthropic` and `google-genai` SDKs.

Run: `.venv/bin/pytest tests/python -q` (after `cargo build -p tollgate-gateway -p tollgate-tests`).
Binaries default to `target/debug/{tollgate,tollgate-mock-upstream}`; `TOLLGATE_BIN` and `TOLLGATE_MOCK_BIN`
override them.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import httpx
from google import genai
from google.genai import types as genai_types
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]

# Two virtual keys: one may use every model (configured by its SHA-256), one only gpt-4o-mini (configured
# through `key_env`, so both ways of naming a key are exercised).
FULL_KEY = "tg-python-sdk-full-0123456789abcdefghijklmnop"
LIMITED_KEY = "tg-python-sdk-limited-0123456789abcdefghijkl"
WRONG_KEY = "tg-not-a-configured-key"
LIMITED_KEY_ENV = "TOLLGATE_PYTEST_LIMITED_KEY"

# Public model name -> upstream model (mock directives script the upstream's behaviour).
MODELS = {
    "gpt-4o-mini": "gpt-4o-mini",
    # Each failing model is its own deployment, because the gateway cools down a deployment's key after a
    # retryable failure: a second request to the same one within the cooldown gets a fail-fast 503.
    "always-429": "gpt?status=429&retry_after=0",
    "always-429-stream": "gpt?status=429&retry_after=0",
    "bad-request": "gpt?status=400&message=Invalid+value+for+tools",
    "upstream-500": "gpt?status=500&message=mock+upstream+exploded",
    "upstream-500-retried": "gpt?status=500&message=mock+upstream+exploded",
    "text-embedding-3-small": "text-embedding-3-small",
}
LIMITED_MODELS = ["gpt-4o-mini"]

# Public model -> upstream model on the `anthropic`-kind provider (the mock's Anthropic dialect).
ANTHROPIC_MODELS = {
    "claude": "claude-sonnet-4-5",
    # Its own deployment: after a retryable failure the key cools down (see MODELS).
    "claude-429": "claude-sonnet-4-5?status=429&retry_after=0",
}

# Public model -> Azure deployment (the mock's Azure dialect; dated API version: deployment URLs).
AZURE_MODELS = {"azure-gpt-4o": "gpt-4o"}

# Public model -> Bedrock model id (the mock's Bedrock dialect, which verifies SigV4 itself).
BEDROCK_MODELS = {"bedrock-sonnet": "anthropic.claude-sonnet-4-5-20250929-v1:0"}
# The mock's test credentials (tollgate_tests::mock_upstream::bedrock), not real ones.
BEDROCK_ACCESS_KEY_ID = "AKIDMOCKBEDROCK"
BEDROCK_SECRET_ACCESS_KEY = "mock/bedrock+secret/KEY0123456789abcdefghi"
BEDROCK_REGION = "us-east-1"
# Public model -> upstream model on the `gemini`-kind provider (the mock's Gemini API dialect; the gateway
# escapes the directives in the URL path and the mock reads them back).
GEMINI_MODELS = {
    "gemini": "gemini-2.5-flash",
    "gemini-429": "gemini-2.5-flash?status=429&retry_after=2",
    # Embeddings: `/v1/embeddings` becomes `:batchEmbedContents`.
    "gemini-embed": "gemini-embedding-001",
}
# Public model -> (provider kind, upstream model) on the native Chinese providers (the mock's native_cn
# dialects: TC3-signed Hunyuan, Qianfan v1 with its token endpoint, DashScope native).
NATIVE_CN_MODELS = {
    "hunyuan-native": ("hunyuan-native", "hunyuan-turbo"),
    "ernie-v1": ("qianfan-v1", "completions_pro"),
    "qwen-native": ("dashscope-native", "qwen-plus"),
}
# Deployments that always fail (each its own, since a failure cools or rests its key): public -> (kind, upstream
# model with the mock directive, the expected HTTP status).
NATIVE_CN_FAILING = {
    f"{public}-{status}": (kind, f"{upstream}?status={status}", status)
    for public, (kind, upstream) in NATIVE_CN_MODELS.items()
    for status in (429, 402)
}
# The mock's Tencent SecretKey of AKIDmockTollgateA, given to the gateway through the environment.
TC3_SECRET_ENV = "TOLLGATE_PYTEST_TC3_SECRET"
TC3_SECRET = "tc3-mock-secret-key-a"

# Key -> (key_id in the config, tenant, team), as the usage rows must show.
KEY_IDENTITY = {
    FULL_KEY: ("full", "acme", "search"),
    LIMITED_KEY: ("limited", "acme", "ads"),
}

METERED_PATHS = ("/v1/chat/completions", "/v1/embeddings", "/v1/messages")
# The Gemini-format API: `/v1beta/models/{model}:generateContent` and `:streamGenerateContent`.
METERED_PREFIX = "/v1beta/models/"


def _binary(env_var: str, name: str) -> Path:
    path = Path(os.environ.get(env_var) or REPO / "target" / "debug" / name)
    if not path.is_file():
        pytest.exit(f"{path} not found: run `cargo build -p tollgate-gateway -p tollgate-tests` or set {env_var}", 2)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drain(stream: Any, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Gateway:
    base_url: str
    mock_url: str
    db_path: Path
    logs: list[str]
    # HTTP requests the SDK clients sent to metered endpoints, by raw key (retries included).
    sent: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, request: Any) -> None:
        if request.url.path in METERED_PATHS or request.url.path.startswith(METERED_PREFIX):
            auth = request.headers.get("authorization", "").removeprefix("Bearer ")
            auth = auth or request.headers.get("x-api-key", "") or request.headers.get("x-goog-api-key", "")
            with self._lock:
                self.sent[auth] += 1

    def client(self, key: str = FULL_KEY, **kwargs: Any) -> openai.OpenAI:
        """An SDK client whose every HTTP request to a metered endpoint is counted in `sent`."""
        http_client = openai.DefaultHttpxClient(event_hooks={"request": [self._count]})
        kwargs.setdefault("max_retries", 0)
        return openai.OpenAI(base_url=self.base_url, api_key=key, http_client=http_client, **kwargs)

    def anthropic_client(self, key: str = FULL_KEY, **kwargs: Any) -> anthropic.Anthropic:
        """An Anthropic SDK client on `/v1/messages` (it sends `x-api-key`), counted in `sent` like `client`."""
        http_client = anthropic.DefaultHttpxClient(event_hooks={"request": [self._count]})
        kwargs.setdefault("max_retries", 0)
        root = self.base_url.removesuffix("/v1")
        return anthropic.Anthropic(base_url=root, api_key=key, http_client=http_client, **kwargs)

    def genai_client(self, key: str = FULL_KEY) -> genai.Client:
        """A google-genai client on the gateway's Gemini-format API (`/v1beta/models/{model}:generateContent`),
        without SDK retries, counted in `sent` like `client`. Keep it referenced while a lazy stream is read: it
        closes its HTTP client when collected."""
        root = self.base_url.removesuffix("/v1")
        options = genai_types.HttpOptions(
            base_url=root,
            api_version="v1beta",
            client_args={"event_hooks": {"request": [self._count]}},
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )
        return genai.Client(api_key=key, http_options=options)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = predicate()
            except sqlite3.OperationalError:
                value = None  # the store may not exist yet
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)

    def upstream_requests(self) -> list[dict[str, Any]]:
        """What the mock upstream received so far (path, headers, body)."""
        return httpx.get(f"{self.mock_url}/__mock/requests", timeout=5).json()

    def row(self, event_id: str) -> sqlite3.Row:
        """The usage row of one request (its `x-request-id`), polled until the async writer has stored it."""
        rows = self.wait_for(
            lambda: self.query("SELECT * FROM usage_events WHERE event_id = ?", (event_id,)),
            f"usage row {event_id}",
        )
        assert len(rows) == 1
        return rows[0]


def _config(listen: str, db: Path, mock_port: int) -> str:
    lines = [
        "[server]",
        f'listen = "{listen}"',
        "[store]",
        f'path = "{db}"',
        "[providers.mock]",
        'kind = "openai-compatible"',
        f'base_url = "http://127.0.0.1:{mock_port}/openai/v1"',
        'api_keys = ["sk-upstream-test"]',
    ]
    for public, upstream in MODELS.items():
        lines += [f'[models."{public}"]', f'deployments = [{{ provider = "mock", model = "{upstream}" }}]']
    lines += [
        "[providers.claude]",
        'kind = "anthropic"',
        f'base_url = "http://127.0.0.1:{mock_port}/anthropic"',
        'api_keys = ["sk-ant-test"]',
    ]
    for public, upstream in ANTHROPIC_MODELS.items():
        lines += [f'[models."{public}"]', f'deployments = [{{ provider = "claude", model = "{upstream}" }}]']
    lines += [
        "[providers.azure]",
        'kind = "azure"',
        f'base_url = "http://127.0.0.1:{mock_port}/azure"',
        'api_keys = ["azure-test-key"]',
        'azure = { api_version = "2024-10-21" }',
    ]
    for public, upstream in AZURE_MODELS.items():
        lines += [f'[models."{public}"]', f'deployments = [{{ provider = "azure", model = "{upstream}" }}]']
    lines += [
        "[providers.bedrock]",
        'kind = "bedrock"',
        f'base_url = "http://127.0.0.1:{mock_port}/bedrock"',
        f'aws = {{ region = "{BEDROCK_REGION}", access_key_id = "{BEDROCK_ACCESS_KEY_ID}", '
        f'secret_access_key = "{BEDROCK_SECRET_ACCESS_KEY}" }}',
    ]
    for public, upstream in BEDROCK_MODELS.items():
        lines += [f'[models."{public}"]', f'deployments = [{{ provider = "bedrock", model = "{upstream}" }}]']
    lines += [
        "[providers.gem]",
        'kind = "gemini"',
        f'base_url = "http://127.0.0.1:{mock_port}/gemini/v1beta"',
        'api_keys = ["AIza-test"]',
    ]
    for public, upstream in GEMINI_MODELS.items():
        lines += [f'[models."{public}"]', f'deployments = [{{ provider = "gem", model = "{upstream}" }}]']
    native = {
        "hunyuan-native": (f"http://127.0.0.1:{mock_port}/hunyuan", f'"AKIDmockTollgateA:${{{TC3_SECRET_ENV}}}"'),
        "qianfan-v1": (
            f"http://127.0.0.1:{mock_port}/qianfan/rpc/2.0/ai_custom/v1/wenxinworkshop",
            '"qf-mock-ak-a:qf-mock-sk-a"',
        ),
        "dashscope-native": (f"http://127.0.0.1:{mock_port}/dashscope/api/v1", '"sk-dsn-python"'),
    }
    for kind, (base_url, key) in native.items():
        lines += [f'[providers."{kind}"]', f'kind = "{kind}"', f'base_url = "{base_url}"', f"api_keys = [{key}]"]
    failing = {public: (kind, upstream) for public, (kind, upstream, _) in NATIVE_CN_FAILING.items()}
    for public, (kind, upstream) in {**NATIVE_CN_MODELS, **failing}.items():
        lines += [f'[models."{public}"]', f'deployments = [{{ provider = "{kind}", model = "{upstream}" }}]']
    lines += ["[pricing.rates]", 'CNY = "0.14"']
    full_id, full_tenant, full_team = KEY_IDENTITY[FULL_KEY]
    lim_id, lim_tenant, lim_team = KEY_IDENTITY[LIMITED_KEY]
    lines += [
        f"[keys.{full_id}]",
        f'tenant = "{full_tenant}"',
        f'team = "{full_team}"',
        f'sha256 = "{hashlib.sha256(FULL_KEY.encode()).hexdigest()}"',
        'models = ["*"]',
        f"[keys.{lim_id}]",
        f'tenant = "{lim_tenant}"',
        f'team = "{lim_team}"',
        f'key_env = "{LIMITED_KEY_ENV}"',
        "models = [" + ", ".join(f'"{m}"' for m in LIMITED_MODELS) + "]",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway_bin = _binary("TOLLGATE_BIN", "tollgate")
    mock_bin = _binary("TOLLGATE_MOCK_BIN", "tollgate-mock-upstream")
    tmp = tmp_path_factory.mktemp("tollgate")

    mock = subprocess.Popen(
        [str(mock_bin), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert mock.stdout is not None
    first = mock.stdout.readline()
    if not first.startswith("listening on "):
        _stop(mock)
        pytest.exit(f"mock upstream did not start: {first!r}", 2)
    mock_port = int(first.rsplit(":", 1)[1])

    port = _free_port()
    db = tmp / "usage.db"
    config = tmp / "tollgate.toml"
    config.write_text(_config(f"127.0.0.1:{port}", db, mock_port))
    env = {**os.environ, LIMITED_KEY_ENV: LIMITED_KEY, TC3_SECRET_ENV: TC3_SECRET, "TOLLGATE_LOG": "info"}
    proc = subprocess.Popen(
        [str(gateway_bin), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    logs: list[str] = []
    threading.Thread(target=_drain, args=(proc.stdout, logs), daemon=True).start()

    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            _stop(mock)
            pytest.exit(f"gateway exited with {proc.returncode}:\n{''.join(logs)}", 2)
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _stop(proc)
            _stop(mock)
            pytest.exit(f"gateway not healthy after 15s:\n{''.join(logs)}", 2)
        time.sleep(0.05)

    gw = Gateway(base_url=f"{base}/v1", mock_url=f"http://127.0.0.1:{mock_port}", db_path=db, logs=logs)
    try:
        yield gw
    finally:
        code = _stop(proc)
        _stop(mock, signal.SIGINT)  # the mock exits cleanly on SIGINT only
    assert code == 0, f"gateway exited with {code} on SIGTERM:\n{''.join(logs)}"
