#!/usr/bin/env bash
# The whole test suite, from a bare machine: installs what it needs, then runs
#   1. cargo fmt --check and cargo clippy (warnings are errors),
#   2. the Rust unit and end-to-end tests (gateway in-process against the mock upstream),
#   3. the official OpenAI SDKs (Python, Node) against the real binaries.
# `.ci/run` calls exactly this. Idempotent: reuses the venv and node_modules when they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are required"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --locked

step "rust tests"
cargo test --workspace --locked

step "python: official openai SDK"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
TOLLGATE_BIN="$ROOT/target/debug/tollgate" TOLLGATE_MOCK_BIN="$ROOT/target/debug/tollgate-mock-upstream" \
  .venv/bin/pytest tests/python -q

step "node: official openai SDK"
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
TOLLGATE_BIN="$ROOT/target/debug/tollgate" TOLLGATE_MOCK_BIN="$ROOT/target/debug/tollgate-mock-upstream" \
  node --test tests/node/
