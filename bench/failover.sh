#!/usr/bin/env bash
# Failover figure (run by hand): one of three upstream keys fails half its requests. Prints the success rate
# clients see and the p99 latency tollgate adds compared with the same run with healthy keys.
#
#   bash bench/failover.sh            # BENCH_RATE (default 1000 req/s), BENCH_DURATION (default 10 s)
#
# The upstream is the project's mock (`tollgate-mock-upstream`): key sk-b answers 500 to every second request
# signed with it (`[mock:status=500&only_key=sk-b&every=2]` in the prompt scripts that). Everything runs on
# 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="$ROOT/bench/out/failover"
RATE=${BENCH_RATE:-1000}
DURATION=${BENCH_DURATION:-10}
MOCK_PORT=18191
TG_PORT=18193
mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

cargo build --release -p tollgate-gateway -p tollgate-tests >&2
"$ROOT/target/release/tollgate-mock-upstream" --listen "127.0.0.1:$MOCK_PORT" >"$OUT/mock.log" 2>&1 &
PIDS+=($!)
KEY="tg-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
HASH=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
cat >"$OUT/tollgate.toml" <<TOML
[server]
listen = "127.0.0.1:$TG_PORT"
[store]
path = "$OUT/usage.db"
[providers.mock]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/openai/v1"
api_keys = ["sk-a", "sk-b", "sk-c"]
[models."gpt-4o-mini"]
deployments = [{ provider = "mock", model = "gpt-4o-mini" }]
[keys.bench]
sha256 = "$HASH"
models = ["*"]
TOML
rm -f "$OUT"/usage.db*
"$ROOT/target/release/tollgate" --config "$OUT/tollgate.toml" >"$OUT/tollgate.log" 2>&1 &
TG=$!
PIDS+=("$TG")
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$TG_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

run() { # name, prompt
  "$ROOT/target/release/tollgate-loadgen" --url "http://127.0.0.1:$TG_PORT/v1/chat/completions" \
    --rate "$RATE" --duration-secs "$DURATION" --connections 64 \
    -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
    --body "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$2\"}]}" >"$OUT/$1.txt" 2>&1 || true
  tail -n 1 "$OUT/$1.txt"
}
field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; }

HEALTHY=$(run healthy "Say hello")
FAILING=$(run failing "Say hello [mock:status=500&only_key=sk-b&every=2]")
kill -TERM "$TG"; wait "$TG" || true

python3 - "$OUT/usage.db" "$HEALTHY" "$FAILING" "$RATE" "$DURATION" <<'PY'
import re, sqlite3, sys
db, healthy, failing, rate, duration = sys.argv[1:6]
def kv(line):
    return dict(re.findall(r"(\w+)=([^\s]+)", line))
h, f = kv(healthy), kv(failing)
rows = sqlite3.connect(db).execute(
    "SELECT count(*), sum(attempts), sum(attempts > 1), sum(outcome = 'success') FROM usage_events").fetchone()
sent, ok = int(f.get("sent", 0)), int(f.get("ok", 0))
print(f"failover at {rate} req/s for {duration}s, 3 upstream keys, sk-b failing every second request (500)")
print(f"{'run':<10} {'sent':>7} {'ok':>7} {'errors':>7} {'p50_ms':>8} {'p99_ms':>8}")
for name, r in (("healthy", h), ("failing", f)):
    print(f"{name:<10} {r.get('sent','?'):>7} {r.get('ok','?'):>7} {r.get('errors','?'):>7} {r.get('p50_ms','?'):>8} {r.get('p99_ms','?'):>8}")
rate_ok = 100.0 * ok / sent if sent else 0.0
added = float(f.get("p99_ms", "nan")) - float(h.get("p99_ms", "nan"))
print(f"client success rate with the failing key: {rate_ok:.3f} % (target 100 %) [{'OK' if ok == sent and sent > 0 else 'MISS'}]")
print(f"added p99: {added:+.2f} ms")
print(f"usage events (both runs): {rows[0]} requests, {rows[1]} upstream attempts, {rows[2]} requests retried, {rows[3]} succeeded")
PY
