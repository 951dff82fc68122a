#!/usr/bin/env bash
# bench/run.sh — Tollgate vs. nginx on this box, in one run. Run by hand, never in CI: `bash bench/run.sh`.
#
# Three targets, all on 127.0.0.1, all in front of the same static mock upstream:
#   direct       nginx answering POST /v1/chat/completions with a fixed chat.completion (port 18081)
#   nginx-proxy  a second nginx, proxy_pass to the first with upstream keepalive (port 18082): the floor
#   tollgate     target/release/tollgate with the embedded SQLite usage store (port 18083)
# Two measurements per target: max throughput (wrk -t1 -c64, closed loop) and p50/p99 at a fixed rate
# (tollgate-loadgen, open loop, latency from each request's scheduled send time). See bench/README.md.
#
# Knobs (environment): BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 2), BENCH_RATE (req/s, 2000),
# BENCH_CONNECTIONS (64), BENCH_SKIP_BUILD=1 (use the binaries already in target/release).
# BENCH_KAFKA=1 adds a fourth target, tollgate-kafka (port 18084): tollgate with the Kafka usage sink, on the
# Kafka of scripts/services.sh (started if needed, stopped again if this script started it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

OUT_REL=bench/out
OUT="$ROOT/$OUT_REL"
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
RATE=${BENCH_RATE:-2000}
CONNS=${BENCH_CONNECTIONS:-64}
UP_PORT=18081
PROXY_PORT=18082
TG_PORT=18083
PATH_CHAT=/v1/chat/completions
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}'
TOLLGATE="$ROOT/target/release/tollgate"
LOADGEN="$ROOT/target/release/tollgate-loadgen"
# Opt-in fourth target: tollgate with the Kafka sink (BENCH_KAFKA=1).
KAFKA=${BENCH_KAFKA:-0}
TGK_PORT=18084
KAFKA_BROKERS="127.0.0.1:${TOLLGATE_KAFKA_PORT:-19092}"
PIPELINE_BENCH="$ROOT/target/release/tollgate-pipeline-bench"
KAFKA_STARTED=0 # 1 when this script started the broker (then it stops it on exit)
KAFKA_TOPIC=""  # set once the topic is created; deleted on exit

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- processes we start, killed on exit
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$KAFKA" = 1 ]; then kafka_cleanup; fi
}
# BENCH_KAFKA=1: delete this run's topic and spool; stop the broker if this script started it.
kafka_cleanup() {
  if [ -n "$KAFKA_TOPIC" ] && [ -x "$PIPELINE_BENCH" ]; then
    "$PIPELINE_BENCH" cleanup --brokers "$KAFKA_BROKERS" --topic "$KAFKA_TOPIC" >&2 || true
  fi
  rm -rf "${TGK_SPOOL:-}"
  if [ "$KAFKA_STARTED" = 1 ]; then
    bash "$ROOT/scripts/services-stop.sh" kafka >&2 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} with apt-get"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get install -y nginx wrk >&2 || { $SUDO apt-get update >&2 && $SUDO apt-get install -y nginx wrk >&2; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in wrk curl sha256sum python3 awk cargo; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# ---------------------------------------------------------------- build
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries (tollgate, tollgate-loadgen)"
  cargo build --release -p tollgate-gateway -p tollgate-tests >&2
fi
[ -x "$TOLLGATE" ] || die "$TOLLGATE is missing"
[ -x "$LOADGEN" ] || die "$LOADGEN is missing"
if [ "$KAFKA" = 1 ]; then [ -x "$PIPELINE_BENCH" ] || die "$PIPELINE_BENCH is missing"; fi

# ---------------------------------------------------------------- fresh output directory
for d in nginx-upstream nginx-proxy; do
  rm -rf "${OUT:?}/$d"
  mkdir -p "$OUT/$d/temp"
done
rm -f "$OUT"/bench-usage.db "$OUT"/bench-usage.db-wal "$OUT"/bench-usage.db-shm "$OUT"/*.txt "$OUT"/*.log
printf '%s' "$BODY" >"$OUT/body.json"

# A fresh virtual key per run; only its SHA-256 goes into the config.
BENCH_KEY="tg-bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
BENCH_KEY_SHA256=$(printf '%s' "$BENCH_KEY" | sha256sum | cut -d' ' -f1)
export BENCH_KEY # read by bench/post.lua

# ---------------------------------------------------------------- configs
# A realistic non-streaming OpenAI answer, with a usage object. No single quotes or '$' in it (nginx string).
MOCK_JSON='{"id":"chatcmpl-BenchAbc123Def456Ghi789Jkl","object":"chat.completion","created":1741570283,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":10,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_06737a9306"}'

# Common top of both nginx configs: one worker, foreground, every path under bench/out.
nginx_head() { # $1 = instance directory
  cat <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; multi_accept on; }
EOF
}
nginx_http_common() { # $1 = instance directory
  cat <<EOF
    access_log off;
    client_body_temp_path $1/temp/body;
    proxy_temp_path $1/temp/proxy;
    fastcgi_temp_path $1/temp/fastcgi;
    uwsgi_temp_path $1/temp/uwsgi;
    scgi_temp_path $1/temp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
EOF
}

UP_DIR="$OUT/nginx-upstream"
{
  nginx_head "$UP_DIR"
  echo "http {"
  nginx_http_common "$UP_DIR"
  cat <<EOF
    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        location = $PATH_CHAT {
            default_type application/json;
            return 200 '$MOCK_JSON';
        }
        # Request counter (used to check the usage store against what tollgate forwarded).
        location = /nginx_status { stub_status; }
        location / { return 404; }
    }
}
EOF
} >"$UP_DIR/nginx.conf"

PROXY_DIR="$OUT/nginx-proxy"
{
  nginx_head "$PROXY_DIR"
  echo "http {"
  nginx_http_common "$PROXY_DIR"
  cat <<EOF
    upstream mock {
        server 127.0.0.1:$UP_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT backlog=4096;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$PROXY_DIR/nginx.conf"

TG_CONFIG="$OUT/tollgate.toml"
cat >"$TG_CONFIG" <<EOF
[server]
listen = "127.0.0.1:$TG_PORT"
[store]
path = "$OUT_REL/bench-usage.db"
[providers.nginx]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$UP_PORT/v1"
[models."gpt-4o-mini"]
deployments = [{ provider = "nginx", model = "gpt-4o-mini" }]
[keys.bench]
sha256 = "$BENCH_KEY_SHA256"
models = ["*"]
EOF

if [ "$KAFKA" = 1 ]; then
  # The same gateway with the Kafka sink instead of the embedded store; a fresh topic and spool per run.
  TGK_UNIQUE="$(date +%Y%m%d%H%M%S)-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  TGK_TOPIC="bench.usage.$TGK_UNIQUE"
  TGK_SPOOL="$OUT/spool-$TGK_UNIQUE"
  TGK_CONFIG="$OUT/tollgate-kafka.toml"
  sed -e "s|^listen = .*|listen = \"127.0.0.1:$TGK_PORT\"|" -e '/^\[store\]$/,/^path = /d' "$TG_CONFIG" >"$TGK_CONFIG"
  cat >>"$TGK_CONFIG" <<EOF
[kafka]
brokers = "$KAFKA_BROKERS"
topic = "$TGK_TOPIC"
spool_dir = "$OUT_REL/spool-$TGK_UNIQUE"
EOF
fi

# ---------------------------------------------------------------- helpers
ensure_port_free() { # $1 = port
  if curl -s --noproxy '*' -o /dev/null --max-time 1 "http://127.0.0.1:$1/" 2>/dev/null; then
    die "something already listens on 127.0.0.1:$1 (a leftover bench run?)"
  fi
}

start_nginx() { # $1 = instance directory, $2 = name
  "$NGINX" -p "$1/" -c "$1/nginx.conf" -e "$1/error.log" -t -q >&2 || die "$2: nginx config test failed ($1/nginx.conf)"
  "$NGINX" -p "$1/" -c "$1/nginx.conf" -e "$1/error.log" >"$1/stdout.log" 2>&1 &
  PIDS+=($!)
  log "$2: nginx pid $! ($1/nginx.conf)"
}

# wait_ready NAME PID CURL_ARGS... : until the URL answers 200 (10 s at most).
wait_ready() {
  local name=$1 pid=$2
  shift 2
  local code
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup (see $OUT_REL)"
    code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 1 "$@" 2>/dev/null || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  die "$name is not ready after 10 s (last HTTP status: ${code:-none})"
}

# check_chat NAME URL: one real request; the answer must be a chat.completion with usage.
check_chat() {
  local name=$1 url=$2 answer
  answer=$(curl -sS --noproxy '*' --fail-with-body --max-time 5 -X POST "$url" \
    -H 'Content-Type: application/json' -H "Authorization: Bearer $BENCH_KEY" --data-binary "@$OUT/body.json") ||
    die "$name: the test request failed: $answer"
  case $answer in
    *'"chat.completion"'*'"usage"'*) ;;
    *) die "$name: unexpected answer: $answer" ;;
  esac
}

# to_ms VALUE: wrk's "474.00us" / "1.06ms" / "1.20s" / "2.00m" -> milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan"
  }'
}

# Processes counted as this run's own (not background) by cpu_snap: the Kafka broker while tollgate-kafka runs.
EXTRA_OURS=()
# Results, by target name.
declare -A RPS P50 P99 FR_P50 FR_P99 ERRS COMPLETED LAG CPU_US BG

# run_wrk NAME URL SECONDS -> bench/out/wrk-NAME.txt ; sets WRK_* variables
run_wrk() {
  local name=$1 url=$2 secs=$3 file="$OUT/wrk-$1.txt"
  wrk -t1 -c"$CONNS" -d"${secs}s" --latency -s bench/post.lua "$url" >"$file" 2>&1 || die "$name: wrk failed: $(cat "$file")"
  WRK_RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$file")
  WRK_P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$file")")
  WRK_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$file")")
  WRK_COUNT=$(awk '/requests in/ {print $1}' "$file")
  WRK_ERRS=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {for (i = 4; i <= NF; i += 2) {gsub(",", "", $i); n += $i}} END {print n + 0}' "$file")
  [ -n "$WRK_RPS" ] && [ -n "$WRK_COUNT" ] || die "$name: cannot parse wrk output: $(cat "$file")"
}

# run_loadgen NAME URL -> bench/out/loadgen-NAME.txt ; sets LG_* variables
run_loadgen() {
  local name=$1 url=$2 file="$OUT/loadgen-$1.txt" rc=0
  "$LOADGEN" --url "$url" --rate "$RATE" --duration-secs "$DURATION" --connections "$CONNS" \
    --header 'Content-Type: application/json' --header "Authorization: Bearer $BENCH_KEY" \
    --body-file "$OUT/body.json" >"$file" 2>"$OUT/loadgen-$name.err" || rc=$?
  [ "$rc" -le 1 ] || die "$name: tollgate-loadgen failed: $(cat "$OUT/loadgen-$name.err")"
  local line
  line=$(grep '^rate=' "$file" | tail -1)
  field() { printf '%s\n' "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
  LG_P50=$(field p50_ms)
  LG_P99=$(field p99_ms)
  LG_OK=$(field ok)
  LG_ERRS=$(field errors)
  LG_LAG=$(field lag_p99_ms)
  LG_LINE=$line
  if [ "$rc" -ne 0 ]; then log "$name: $LG_ERRS fixed-rate requests failed, e.g.: $(head -1 "$OUT/loadgen-$name.err")"; fi
}

# CPU accounting, in clock ticks, to tell how much CPU a target spends per request and whether something
# else on the box (a build, a database) took CPU during a measurement.
CLK_TCK=$(getconf CLK_TCK)
# ticks PID...: CPU time used so far by these processes and their direct children (nginx workers).
ticks() {
  local t=0 pid c v
  for pid in "$@"; do
    for c in "$pid" $(pgrep -P "$pid" 2>/dev/null || true); do
      v=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$c/stat" 2>/dev/null || true)
      t=$((t + ${v:-0}))
    done
  done
  echo "$t"
}
# cpu_snap PID...: "busy total ours own" — box busy (user+nice+system) and total ticks, ticks of everything
# this script started (waited-for children such as wrk/loadgen, plus the live servers), ticks of PID...
cpu_snap() {
  local box self servers own
  box=$(awk '/^cpu / {print $2 + $3 + $4, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  self=$(awk '{sub(/^.*\) /, ""); print $14 + $15}' "/proc/$$/stat")
  servers=$(ticks "${PIDS[@]}" "${EXTRA_OURS[@]}")
  own=$(ticks "$@")
  echo "$box $((self + servers)) $own"
}

# measure NAME URL PID...: warm-up, max throughput, fixed rate. PID...: the target's own processes.
measure() {
  local name=$1 url=$2
  shift 2
  log "$name: warm-up ${WARMUP}s"
  run_wrk "$name-warmup" "$url" "$WARMUP"
  local warm_count=$WRK_COUNT warm_errs=$WRK_ERRS s0 s1 s2
  log "$name: max throughput, wrk -t1 -c$CONNS -d${DURATION}s"
  s0=$(cpu_snap "$@")
  run_wrk "$name" "$url" "$DURATION"
  s1=$(cpu_snap "$@")
  RPS[$name]=$WRK_RPS P50[$name]=$WRK_P50 P99[$name]=$WRK_P99
  sleep 1 # let the box settle after saturation
  log "$name: fixed rate ${RATE} req/s for ${DURATION}s (open loop)"
  local s1b
  s1b=$(cpu_snap "$@")
  run_loadgen "$name" "$url"
  s2=$(cpu_snap "$@")
  log "$name: $LG_LINE"
  FR_P50[$name]=$LG_P50 FR_P99[$name]=$LG_P99 LAG[$name]=$LG_LAG
  ERRS[$name]=$((warm_errs + WRK_ERRS + LG_ERRS))
  COMPLETED[$name]=$((warm_count + WRK_COUNT + LG_OK))
  # CPU per request of the target's own processes at max throughput (the shared upstream excluded).
  CPU_US[$name]=$(awk -v a="$s0" -v b="$s1" -v n="$WRK_COUNT" -v hz="$CLK_TCK" \
    'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.1f", (n > 0 ? (y[4] - x[4]) * 1e6 / hz / n : 0)}')
  # CPU used by processes this script did not start, as a share of the box, during both measurements.
  BG[$name]=$(awk -v a="$s0" -v b="$s1" -v c="$s1b" -v d="$s2" 'BEGIN {
    split(a, w, " "); split(b, x, " "); split(c, y, " "); split(d, z, " ");
    busy = (x[1] - w[1]) + (z[1] - y[1]); all = (x[2] - w[2]) + (z[2] - y[2]); ours = (x[3] - w[3]) + (z[3] - y[3]);
    bg = all > 0 ? 100 * (busy - ours) / all : 0; printf "%.0f", (bg < 0 ? 0 : bg) }')
}

# cpu_idle SECONDS: percentage of the box's CPU time that was idle over the next SECONDS.
cpu_idle() {
  local a b
  a=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  sleep "$1"
  b=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; printf "%.0f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0)}'
}

upstream_requests() { # nginx stub_status "requests" counter of the upstream (includes this request)
  curl -sS --noproxy '*' --max-time 2 "http://127.0.0.1:$UP_PORT/nginx_status" | awk 'NR == 3 {print $3}'
}

# ---------------------------------------------------------------- start
for port in $UP_PORT $PROXY_PORT $TG_PORT; do ensure_port_free "$port"; done
"$TOLLGATE" --config "$TG_CONFIG" check >&2 || die "the generated tollgate config is invalid ($TG_CONFIG)"
if [ "$KAFKA" = 1 ]; then
  ensure_port_free "$TGK_PORT"
  "$TOLLGATE" --config "$TGK_CONFIG" check >&2 || die "the generated tollgate config is invalid ($TGK_CONFIG)"
  # Kafka from scripts/services.sh (idempotent: a running broker is reused, and then left running).
  if ! timeout 2 bash -c "exec 3<>/dev/tcp/${KAFKA_BROKERS%:*}/${KAFKA_BROKERS##*:}" 2>/dev/null; then
    KAFKA_STARTED=1
  fi
  log "kafka: scripts/services.sh kafka"
  bash "$ROOT/scripts/services.sh" kafka >&2 || die "scripts/services.sh kafka failed"
  "$PIPELINE_BENCH" create-topics --brokers "$KAFKA_BROKERS" --partitions 3 "$TGK_TOPIC" >&2 ||
    die "cannot create the topic $TGK_TOPIC"
  KAFKA_TOPIC=$TGK_TOPIC
fi

start_nginx "$UP_DIR" direct
UP_PID=${PIDS[-1]}
start_nginx "$PROXY_DIR" nginx-proxy
PROXY_PID=${PIDS[-1]}
wait_ready direct "$UP_PID" -X POST -H 'Content-Type: application/json' --data-binary "@$OUT/body.json" "http://127.0.0.1:$UP_PORT$PATH_CHAT"
wait_ready nginx-proxy "$PROXY_PID" -X POST -H 'Content-Type: application/json' --data-binary "@$OUT/body.json" "http://127.0.0.1:$PROXY_PORT$PATH_CHAT"
check_chat direct "http://127.0.0.1:$UP_PORT$PATH_CHAT"
check_chat nginx-proxy "http://127.0.0.1:$PROXY_PORT$PATH_CHAT"

# ---------------------------------------------------------------- measure: direct, nginx-proxy
IDLE_BEFORE=$(cpu_idle 2)
log "CPU idle before the measurements: ${IDLE_BEFORE}%"
measure direct "http://127.0.0.1:$UP_PORT$PATH_CHAT" "$UP_PID"
measure nginx-proxy "http://127.0.0.1:$PROXY_PORT$PATH_CHAT" "$PROXY_PID"

# ---------------------------------------------------------------- measure: tollgate (last: it is stopped to count its store)
UP_BEFORE=$(upstream_requests)
"$TOLLGATE" --config "$TG_CONFIG" >"$OUT/tollgate.log" 2>&1 &
TG_PID=$!
PIDS+=("$TG_PID")
log "tollgate: pid $TG_PID ($TG_CONFIG)"
wait_ready tollgate "$TG_PID" "http://127.0.0.1:$TG_PORT/readyz"
check_chat tollgate "http://127.0.0.1:$TG_PORT$PATH_CHAT"
measure tollgate "http://127.0.0.1:$TG_PORT$PATH_CHAT" "$TG_PID"
TG_CLIENT_OK=$((COMPLETED[tollgate] + 1)) # + the check_chat request
sleep 0.5                                 # let requests wrk abandoned at its deadline finish
SINK=$(curl -sS --noproxy '*' --max-time 2 "http://127.0.0.1:$TG_PORT/readyz" || echo '{}')
log "tollgate: stopping (SIGTERM) so it flushes its usage store"
kill -TERM "$TG_PID"
TG_RC=0
wait "$TG_PID" || TG_RC=$?
[ "$TG_RC" -eq 0 ] || log "tollgate exited with status $TG_RC (see $OUT_REL/tollgate.log)"
UP_AFTER=$(upstream_requests)
TG_FORWARDED=$((UP_AFTER - UP_BEFORE - 1)) # minus the second stub_status request itself

# ---------------------------------------------------------------- usage store check
read -r ROWS ROWS_OK OUTCOMES < <(python3 -c '
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows = db.execute("SELECT count(*) FROM usage_events").fetchone()[0]
# Rows of requests that reached the upstream: served, or served to a client that had hung up.
ok = db.execute("SELECT count(*) FROM usage_events WHERE outcome IN (?, ?)", ("success", "client_disconnected")).fetchone()[0]
by = ",".join(f"{o}:{n}" for o, n in db.execute("SELECT outcome, count(*) FROM usage_events GROUP BY outcome ORDER BY 2 DESC"))
print(rows, ok, by or "-")
' "$OUT/bench-usage.db")
read -r EMITTED DROPPED < <(printf '%s' "$SINK" | python3 -c '
import json, sys
s = json.load(sys.stdin).get("sink", {})
print(s.get("emitted", "?"), s.get("dropped", "?"))
')
[ -n "${ROWS:-}" ] && [ -n "${ROWS_OK:-}" ] || die "cannot read the usage store $OUT_REL/bench-usage.db"
[ -n "${EMITTED:-}" ] || EMITTED="?"
[ -n "${DROPPED:-}" ] || DROPPED="?"

# ---------------------------------------------------------------- measure: tollgate-kafka (BENCH_KAFKA=1)
TARGETS=(direct nginx-proxy tollgate)
if [ "$KAFKA" = 1 ]; then
  TARGETS+=(tollgate-kafka)
  BROKER_PID=$(tr -dc '0-9' <"$ROOT/.tollgate/services/kafka/kafka.pid" 2>/dev/null || true)
  [ -n "$BROKER_PID" ] && [ -r "/proc/$BROKER_PID/stat" ] || BROKER_PID="" # a broker not started by services.sh
  "$TOLLGATE" --config "$TGK_CONFIG" >"$OUT/tollgate-kafka.log" 2>&1 &
  TGK_PID=$!
  PIDS+=("$TGK_PID")
  log "tollgate-kafka: pid $TGK_PID ($TGK_CONFIG, topic $TGK_TOPIC)"
  wait_ready tollgate-kafka "$TGK_PID" "http://127.0.0.1:$TGK_PORT/readyz"
  check_chat tollgate-kafka "http://127.0.0.1:$TGK_PORT$PATH_CHAT"
  if [ -n "$BROKER_PID" ]; then EXTRA_OURS=("$BROKER_PID"); fi
  BROKER_T0=$(ticks "${EXTRA_OURS[@]}")
  measure tollgate-kafka "http://127.0.0.1:$TGK_PORT$PATH_CHAT" "$TGK_PID"
  BROKER_T1=$(ticks "${EXTRA_OURS[@]}")
  EXTRA_OURS=()
  TGK_CLIENT_OK=$((COMPLETED[tollgate-kafka] + 1)) # + the check_chat request
  BROKER_US=$(awk -v t="$((BROKER_T1 - BROKER_T0))" -v n="$TGK_CLIENT_OK" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0)}')
  # Wait (10 s at most) until every emitted event is delivered to Kafka or spooled, then stop the gateway.
  K_EMITTED="?" K_WRITTEN="?" K_DROPPED="?" K_SPOOLED="?" K_REPLAYED="?"
  for _ in $(seq 1 100); do
    sleep 0.1
    TGK_SINK=$(curl -sS --noproxy '*' --max-time 2 "http://127.0.0.1:$TGK_PORT/readyz" || echo '{}')
    read -r K_EMITTED K_WRITTEN K_DROPPED K_SPOOLED K_REPLAYED < <(printf '%s' "$TGK_SINK" | python3 -c '
import json, sys
s = json.load(sys.stdin).get("sink", {})
print(*(s.get(k, "?") for k in ("emitted", "written", "dropped", "spooled", "replayed")))
')
    [ "$K_EMITTED" != "?" ] && [ $((K_WRITTEN + K_DROPPED + K_SPOOLED - K_REPLAYED)) -ge "$K_EMITTED" ] && break
  done
  log "tollgate-kafka: stopping (SIGTERM)"
  kill -TERM "$TGK_PID"
  TGK_RC=0
  wait "$TGK_PID" || TGK_RC=$?
  [ "$TGK_RC" -eq 0 ] || log "tollgate-kafka exited with status $TGK_RC (see $OUT_REL/tollgate-kafka.log)"
  TOPIC_MESSAGES=$("$PIPELINE_BENCH" topic-count --brokers "$KAFKA_BROKERS" --topic "$TGK_TOPIC" |
    tr ' ' '\n' | awk -F= '$1 == "messages" {print $2}') || true
  TOPIC_MESSAGES=${TOPIC_MESSAGES:-?}
  KAFKA_OK=OK
  if [ "$K_DROPPED" != 0 ] || [ "$TOPIC_MESSAGES" != "$K_EMITTED" ] || [ "$K_EMITTED" = "?" ] ||
    [ "$K_EMITTED" -lt "$TGK_CLIENT_OK" ] || [ "$TGK_RC" -ne 0 ]; then
    KAFKA_OK=FAIL
  fi
fi

# ---------------------------------------------------------------- report
rps_ratio=$(awk -v a="${RPS[tollgate]}" -v b="${RPS[nginx-proxy]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
p99_delta=$(awk -v a="${FR_P99[tollgate]}" -v b="${FR_P99[nginx-proxy]}" 'BEGIN {printf "%+.2f", a - b}')
rps_ok=$(awk -v r="$rps_ratio" 'BEGIN {print (r >= 0.5 ? "OK" : "MISS")}')
p99_ok=$(awk -v d="$p99_delta" 'BEGIN {print (d <= 1.0 ? "OK" : "MISS")}')

# The check: every request tollgate answered is one row. Rows must equal what tollgate emitted (nothing lost
# between the request path and the file, nothing dropped) and cover every 2xx a client received; rows may
# exceed the client count by the requests wrk abandoned at its deadline after tollgate had answered them.
COUNT_OK=OK
if [ "$ROWS" != "$EMITTED" ] || [ "$DROPPED" != 0 ] || [ "$ROWS" -lt "$TG_CLIENT_OK" ] || [ "$TG_RC" -ne 0 ]; then
  COUNT_OK=FAIL
fi
# Independent cross-check from the upstream's own counter: requests tollgate sent upstream without a row.
UNMETERED=$((TG_FORWARDED - ROWS_OK))

{
  echo
  echo "Tollgate benchmark — $(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) cores, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- gateway 2>/dev/null || echo '+dirty')"
  echo "non-streaming POST $PATH_CHAT; each nginx: worker_processes 1 (fair on 2 cores); tollgate: default tokio runtime ($(nproc) workers);"
  echo "wrk -t1 -c$CONNS -d${DURATION}s (closed loop, max throughput); fixed rate: tollgate-loadgen ${RATE} req/s x ${DURATION}s, open loop, $CONNS connections;"
  echo "load generators, nginx and tollgate share the same cores. Raw outputs: $OUT_REL/wrk-*.txt, $OUT_REL/loadgen-*.txt"
  if [ "$KAFKA" = 1 ]; then
    echo "tollgate-kafka: the same gateway with the Kafka sink (acks=all, lz4) to the broker of scripts/services.sh ($KAFKA_BROKERS, a JVM on the same cores), fresh topic, 3 partitions"
  fi
  if [ "$IDLE_BEFORE" -lt 90 ]; then
    echo "WARNING: the box was only ${IDLE_BEFORE}% idle before the run: other work competes for the cores, numbers are noisy"
  fi
  for t in "${TARGETS[@]}"; do
    if [ "${BG[$t]}" -ge 5 ]; then
      echo "WARNING: other processes took ${BG[$t]}% of the CPU while $t was measured: its numbers are noisy"
    fi
  done
  echo
  W=12
  [ "$KAFKA" != 1 ] || W=14 # room for "tollgate-kafka"
  printf '%-*s %8s %8s %8s | @%srps %7s %7s | %6s %10s %7s %9s\n' "$W" target rps p50_ms p99_ms "$RATE" p50_ms p99_ms \
    errors cpu_us/req bg_cpu% gen_lag99
  for t in "${TARGETS[@]}"; do
    printf '%-*s %8s %8s %8s | %*s %7s %7s | %6s %10s %7s %9s\n' "$W" "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" $((${#RATE} + 4)) "" \
      "${FR_P50[$t]}" "${FR_P99[$t]}" "${ERRS[$t]}" "${CPU_US[$t]}" "${BG[$t]}" "${LAG[$t]}"
  done
  echo "ratio tollgate/nginx-proxy: rps $rps_ratio (target >= 0.5) [$rps_ok], p99@$RATE delta $p99_delta ms (target <= 1 ms) [$p99_ok]"
  echo "usage store: $ROWS rows in usage_events ($OUTCOMES) after SIGTERM; clients received $TG_CLIENT_OK 2xx from tollgate;" \
    "sink emitted=$EMITTED dropped=$DROPPED -> count check $COUNT_OK"
  if [ "$UNMETERED" -gt 0 ]; then
    echo "WARNING: tollgate forwarded $TG_FORWARDED requests upstream (nginx stub_status) but only $ROWS_OK have a row:" \
      "$UNMETERED upstream calls unmetered"
  else
    echo "cross-check: tollgate forwarded $TG_FORWARDED requests upstream (nginx stub_status), $ROWS_OK rows for them (success + client_disconnected)"
  fi
  if [ "$KAFKA" = 1 ]; then
    k_ratio=$(awk -v a="${RPS[tollgate-kafka]}" -v b="${RPS[nginx-proxy]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
    k_vs_tg=$(awk -v a="${RPS[tollgate-kafka]}" -v b="${RPS[tollgate]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
    k_delta=$(awk -v a="${FR_P99[tollgate-kafka]}" -v b="${FR_P99[nginx-proxy]}" 'BEGIN {printf "%+.2f", a - b}')
    k_rps_ok=$(awk -v r="$k_ratio" 'BEGIN {print (r >= 0.5 ? "OK" : "MISS")}')
    k_p99_ok=$(awk -v d="$k_delta" 'BEGIN {print (d <= 1.0 ? "OK" : "MISS")}')
    echo "ratio tollgate-kafka/nginx-proxy: rps $k_ratio (target >= 0.5) [$k_rps_ok], p99@$RATE delta $k_delta ms (target <= 1 ms) [$k_p99_ok]; rps tollgate-kafka/tollgate $k_vs_tg"
    echo "kafka sink: emitted=$K_EMITTED written=$K_WRITTEN dropped=$K_DROPPED spooled=$K_SPOOLED replayed=$K_REPLAYED;" \
      "topic $TGK_TOPIC holds $TOPIC_MESSAGES messages; clients received $TGK_CLIENT_OK 2xx -> count check $KAFKA_OK"
    if [ -n "$BROKER_PID" ]; then
      echo "kafka broker (pid $BROKER_PID): $BROKER_US us CPU per tollgate-kafka request (warm-up + wrk + fixed rate), not in cpu_us/req"
    fi
  fi
}

[ "$COUNT_OK" = OK ] || exit 1
[ "$KAFKA" != 1 ] || [ "$KAFKA_OK" = OK ] || exit 1
