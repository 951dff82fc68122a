#!/usr/bin/env bash
# The whole test suite, from a bare machine: installs what it needs, then runs
#   1. cargo fmt --check and cargo clippy (warnings are errors),
#   2. the Rust unit and end-to-end tests (gateway in-process against the mock upstream),
#   3. the pipeline and ClickHouse re-pricing tests against real Kafka and ClickHouse (scripts/services.sh),
#   4. the official OpenAI SDKs (Python, Node) against the real binaries, the ClickHouse DDL on current
#      ClickHouse (chdb), every dashboard / analytics query on both ClickHouse versions, and the usage page in
#      headless Chromium,
#   5. docker-compose.yml validated with `docker compose config`.
# `.ci/run` calls exactly this. Idempotent: reuses the venv and node_modules when they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# One-shot builds gain nothing from incremental compilation, which would keep a second copy of our crates on disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

# Everything is also written to a log, from which the closing summary line is counted.
mkdir -p .tollgate
LOG=.tollgate/test-run.log
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are required"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
# librdkafka is built from source (rdkafka's cmake-build): it needs cmake, a C compiler and curl's headers.
missing=()
command -v cmake >/dev/null || missing+=(cmake)
[ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
# The real Prometheus server scrapes /metrics in tests/python/test_prometheus.py.
command -v prometheus >/dev/null || missing+=(prometheus)
# The usage page is rendered in a real headless Chromium (tests/python/test_usage_page.py).
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  # The package may start its own services; tests run their own instances on free ports.
  pkill -x prometheus 2>/dev/null || true
  pkill -f prometheus-node-exporter 2>/dev/null || true
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
# Binaries and test targets in one invocation, so both get the same (dev-dependency-unified) features and
# `cargo test` below reuses every artifact instead of building a second copy of half the tree.
cargo build --workspace --locked --bins --tests

step "rust tests"
cargo test --workspace --locked

step "services: Kafka and ClickHouse"
bash scripts/services.sh

step "pipeline tests (real Kafka + ClickHouse)"
cargo test --locked -p tollgate-tests --test e2e pipeline:: -- --ignored --test-threads=1
cargo test --locked -p tollgate-tests --test e2e reprice_clickhouse:: -- --ignored --test-threads=1
cargo test --locked -p tollgate-tests --test e2e control_cluster:: -- --ignored --test-threads=1
cargo test --locked -p tollgate-tests --test e2e budget_cluster:: -- --ignored --test-threads=1

step "usage reports: ClickHouse backend against the embedded store"
cargo test --locked -p tollgate-tests --test e2e reports:: -- --ignored

step "python: official openai SDK"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
# test_dashboards.py also runs tollgate-metering against the services: every dashboard and guide query on
# ClickHouse 18.16 and on current ClickHouse (chdb), over data from the real pipeline.
TOLLGATE_BIN="$ROOT/target/debug/tollgate" TOLLGATE_MOCK_BIN="$ROOT/target/debug/tollgate-mock-upstream" \
  TOLLGATE_METERING_BIN="$ROOT/target/debug/tollgate-metering" \
  .venv/bin/pytest tests/python -q

step "node: official openai SDK"
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
TOLLGATE_BIN="$ROOT/target/debug/tollgate" TOLLGATE_MOCK_BIN="$ROOT/target/debug/tollgate-mock-upstream" \
  node --test tests/node/

step "docker-compose.yml"
bash scripts/install-compose.sh
TOLLGATE_API_KEY=ci-check docker compose -f docker-compose.yml config --quiet
TOLLGATE_API_KEY=ci-check docker compose -f docker-compose.yml --profile demo config --quiet
echo "docker-compose.yml is valid"

step "summary"
python3 - "$LOG" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
passed = failed = 0
for p, f in re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", text):   # cargo test
    passed += int(p); failed += int(f)
for line in re.findall(r"^=+ (.*) in [\d.]+s =+$|^(\d+ passed.*) in [\d.]+s$", text, re.M):   # pytest
    summary = line[0] or line[1]
    passed += sum(int(n) for n in re.findall(r"(\d+) passed", summary))
    failed += sum(int(n) for n in re.findall(r"(\d+) failed", summary))
passed += sum(int(n) for n in re.findall(r"^# pass (\d+)$", text, re.M))   # node --test
failed += sum(int(n) for n in re.findall(r"^# fail (\d+)$", text, re.M))
print(f"{passed} passed, {failed} failed")
PY
