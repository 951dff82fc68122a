#!/usr/bin/env bash
# bench/pipeline.sh — the usage pipeline (gateway → Kafka → tollgate-metering → ClickHouse) on this box, with the
# real Kafka and ClickHouse of scripts/services.sh. Run by hand, never in CI: `bash bench/pipeline.sh`.
#
#   1. producer   tollgate-pipeline-bench producer: synthetic UsageEvents through the gateway's Kafka sink into a
#                 fresh topic → events/s                                            [target >= 50,000/s, dropped 0]
#   2. consumer   tollgate-metering on that topic, fresh group and database → rows/s from the first row visible to
#                 all rows visible (count() polled every 100 ms), and over the wall time incl. start-up
#                                                     [target >= 50,000 rows/s; count() = uniqExact(event_id) = N]
#   3. lag        tollgate (Kafka sink) in front of a static nginx upstream + a consumer; tollgate-loadgen at
#                 1,000 req/s for 20 s → p50/p99/max of inserted_at_ms - finished_at_ms  [target p99 <= 2,000 ms]
#   4. RPS        BENCH_KAFKA=1 bash bench/run.sh: direct / nginx-proxy / tollgate / tollgate-kafka
#
# Every topic, consumer group, database, spool and process it creates is unique to the run and removed on exit
# (also on Ctrl-C); services it had to start are stopped again. Files: bench/out/pipeline/. See bench/README.md.
#
# Knobs (environment): PIPELINE_EVENTS (300000), PIPELINE_RATE (req/s, 1000), PIPELINE_DURATION (s, 20),
# PIPELINE_CONNECTIONS (64), PIPELINE_CONSUMER_ARGS (extra tollgate-metering flags, e.g. "--batch-age-ms 100"),
# PIPELINE_RUN_SH=0 (skip step 4), PIPELINE_SKIP_BUILD=1 (use the binaries already in target/release).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

OUT_REL=bench/out/pipeline
OUT="$ROOT/$OUT_REL"
EVENTS=${PIPELINE_EVENTS:-300000}
RATE=${PIPELINE_RATE:-1000}
DURATION=${PIPELINE_DURATION:-20}
CONNS=${PIPELINE_CONNECTIONS:-64}
read -r -a CONSUMER_ARGS <<<"${PIPELINE_CONSUMER_ARGS:-}"
BROKERS="127.0.0.1:${TOLLGATE_KAFKA_PORT:-19092}"
CH_URL="http://127.0.0.1:${TOLLGATE_CLICKHOUSE_HTTP_PORT:-18123}"
UP_PORT=18081 # the static nginx upstream (same as bench/run.sh; not running at the same time)
GW_PORT=18085
PATH_CHAT=/v1/chat/completions
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}'
TOLLGATE="$ROOT/target/release/tollgate"
METERING="$ROOT/target/release/tollgate-metering"
LOADGEN="$ROOT/target/release/tollgate-loadgen"
PB="$ROOT/target/release/tollgate-pipeline-bench"
KAFKA_PID_FILE="$ROOT/.tollgate/services/kafka/kafka.pid"
CH_PID_FILE="$ROOT/.tollgate/services/clickhouse/clickhouse.pid"

# Unique per run: topics, consumer groups, databases.
RUN_ID="$(date -u +%Y%m%d%H%M%S)$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')"
TOPIC1="bench.usage.pipeline.$RUN_ID.producer"
GROUP2="bench-pipeline-$RUN_ID-consumer"
DB2="bench_pipeline_${RUN_ID}_consumer"
TOPIC3="bench.usage.pipeline.$RUN_ID.lag"
GROUP3="bench-pipeline-$RUN_ID-lag"
DB3="bench_pipeline_${RUN_ID}_lag"

log() { printf '[pipeline] %s\n' "$*" >&2; }
die() { printf '[pipeline] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- what we start, undone on exit
PIDS=()      # processes
TOPICS=()    # Kafka topics
GROUPS_=()   # Kafka consumer groups
DBS=()       # ClickHouse databases
STARTED=()   # services scripts/services.sh started for us (kafka, clickhouse)

# stop_pid PID [SECONDS]: SIGTERM, wait (10 s by default), then SIGKILL; forget it.
stop_pid() {
  local pid=$1 limit=${2:-10} i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    [ "$(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  STOP_RC=0
  wait "$pid" 2>/dev/null || STOP_RC=$?
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

ch() { # ch SQL: one ClickHouse query over HTTP, TSV out
  curl -sS --noproxy '*' --max-time 60 --fail-with-body "$CH_URL/" --data-binary "$1"
}

cleanup() {
  local rc=$? pid db
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid" 10; done
  for db in "${DBS[@]}"; do
    ch "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 && log "dropped database $db" || log "could not drop database $db"
  done
  if [ ${#TOPICS[@]} -gt 0 ] || [ ${#GROUPS_[@]} -gt 0 ]; then
    local args=() t
    for t in "${TOPICS[@]}"; do args+=(--topic "$t"); done
    for t in "${GROUPS_[@]}"; do args+=(--group "$t"); done
    "$PB" cleanup --brokers "$BROKERS" "${args[@]}" 2>&1 | sed 's/^/[pipeline] kafka cleanup: /' >&2 || true
  fi
  rm -rf "$OUT"/spool-*
  local s
  for s in "${STARTED[@]}"; do
    log "stopping $s (this script started it)"
    bash "$ROOT/scripts/services-stop.sh" "$s" >&2 || true
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools, build, services
for tool in curl python3 awk cargo sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  log "installing nginx with apt-get"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get install -y nginx >&2 || { $SUDO apt-get update >&2 && $SUDO apt-get install -y nginx >&2; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ "${PIPELINE_SKIP_BUILD:-0}" != 1 ]; then
  log "building release binaries (tollgate, tollgate-metering, tollgate-loadgen, tollgate-pipeline-bench)"
  cargo build --release -p tollgate-gateway -p tollgate-metering -p tollgate-tests >&2
fi
for b in "$TOLLGATE" "$METERING" "$LOADGEN" "$PB"; do [ -x "$b" ] || die "$b is missing"; done

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
for p in $UP_PORT $GW_PORT; do
  port_open "$p" && die "something already listens on 127.0.0.1:$p (a leftover bench run?)"
done
port_open "${BROKERS##*:}" || STARTED+=(kafka)
[ "$(curl -s --noproxy '*' --max-time 3 "$CH_URL/?query=SELECT%201" 2>/dev/null)" = 1 ] || STARTED+=(clickhouse)
log "services: scripts/services.sh (Kafka $BROKERS, ClickHouse $CH_URL)"
bash "$ROOT/scripts/services.sh" all >&2 || die "scripts/services.sh failed"
CH_VERSION=$(ch "SELECT version()")

rm -rf "$OUT"
mkdir -p "$OUT"
printf '%s' "$BODY" >"$OUT/body.json"

# ---------------------------------------------------------------- helpers
# field KEY LINE: the value of KEY in a "k=v k=v" line
field() { printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2; exit}'; }
at_least() { awk -v v="$1" -v t="$2" 'BEGIN {print (v + 0 >= t + 0 ? "OK" : "MISS")}'; } # at_least VALUE TARGET
at_most() { awk -v v="$1" -v t="$2" 'BEGIN {print (v + 0 <= t + 0 ? "OK" : "MISS")}'; }   # at_most VALUE TARGET
pidfile_pid() { local p; p=$(tr -dc '0-9' <"$1" 2>/dev/null || true); [ -n "$p" ] && [ -r "/proc/$p/stat" ] && echo "$p" || true; }
KAFKA_PID=$(pidfile_pid "$KAFKA_PID_FILE")
CH_PID=$(pidfile_pid "$CH_PID_FILE")

# CPU accounting per phase: CPU seconds of named processes, how busy the box was, and how much of that was
# processes this script did not start (a build, a test suite: then the numbers are noisy).
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
ticks_of() { [ -n "${1:-}" ] && awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }
self_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$$/stat"; } # + reaped children
box_ticks() { awk '/^cpu / {print $2 + $3 + $4, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
# kernel threads (children of kthreadd, pid 2): disk writeback and the like, done for our processes
kernel_ticks() { awk '{sub(/^[0-9]+ \(.*\) /, ""); if ($2 == 2) t += $12 + $13} END {print t + 0}' /proc/[0-9]*/stat 2>/dev/null || true; }
declare -A CPU0
# cpu_begin NAME=PID...: remember their ticks, ours and the box's
cpu_begin() {
  local kv
  CPU0=()
  CPU_NAMES=()
  for kv in "$@"; do
    CPU_NAMES+=("$kv")
    CPU0[$kv]=$(ticks_of "${kv#*=}")
  done
  SELF0=$(self_ticks)
  KERNEL0=$(kernel_ticks)
  read -r BOX0_BUSY BOX0_ALL < <(box_ticks)
}
# (kernel threads count as ours: on an otherwise idle box they work for the benchmark's I/O)
# cpu_end: sets CPU_LINE ("name=1.23s ...; box busy 87% of 2 cores, other processes 3%") and CPU_BG (that share)
cpu_end() {
  local kv parts=() t busy all ours
  read -r busy all < <(box_ticks)
  ours=$(($(self_ticks) - SELF0 + $(kernel_ticks) - KERNEL0))
  for kv in "${CPU_NAMES[@]}"; do
    t=$(ticks_of "${kv#*=}")
    ours=$((ours + t - ${CPU0[$kv]}))
    parts+=("${kv%%=*}=$(awk -v a="${CPU0[$kv]}" -v b="$t" -v hz="$CLK_TCK" 'BEGIN {printf "%.2fs", (b - a) / hz}')")
  done
  CPU_BG=$(awk -v b=$((busy - BOX0_BUSY)) -v o="$ours" -v a=$((all - BOX0_ALL)) 'BEGIN {v = (a > 0 ? 100 * (b - o) / a : 0); printf "%.0f", (v < 0 ? 0 : v)}')
  CPU_LINE="${parts[*]}; box busy $(awk -v b=$((busy - BOX0_BUSY)) -v a=$((all - BOX0_ALL)) 'BEGIN {printf "%.0f", (a > 0 ? 100 * b / a : 0)}')% of $NCPU cores, other processes ${CPU_BG}%"
}
WARNINGS=()
# noisy PHASE: a warning when processes this script did not start took >= 5% of the box during PHASE
noisy() { [ "$CPU_BG" -lt 5 ] || WARNINGS+=("WARNING: other processes took ${CPU_BG}% of the CPU during $1: its numbers are noisy"); }

# start_consumer TOPIC GROUP DB LOG: tollgate-metering in the background; sets CONSUMER_PID
start_consumer() {
  TOPICS+=("$1.dlq") # created only if a record cannot be decoded; deleted anyway
  GROUPS_+=("$2")
  DBS+=("$3")
  "$METERING" --brokers "$BROKERS" --topic "$1" --dead-letter-topic "$1.dlq" --group "$2" \
    --clickhouse-url "$CH_URL" --database "$3" --http-addr 127.0.0.1:0 "${CONSUMER_ARGS[@]}" >"$4" 2>&1 &
  CONSUMER_PID=$!
  PIDS+=("$CONSUMER_PID")
  log "consumer: pid $CONSUMER_PID (topic $1, group $2, database $3)"
}

# wait_rows TABLE EXPECT TIMEOUT_S STARTED_AT_MS OUTFILE: poll count() every 100 ms; sets WR (its line), WR_RC
wait_rows() {
  WR_RC=0
  "$PB" wait-rows --clickhouse-url "$CH_URL" --table "$1" --expect "$2" --interval-ms 100 --timeout-secs "$3" \
    --started-at-ms "$4" --watch-pid "$CONSUMER_PID" >"$5" 2>>"$OUT/pipeline-bench.err" || WR_RC=$?
  WR=$(tail -1 "$5")
}

now_ms() { date +%s%3N; }

# The box should be quiet: a build or a test suite running next to the benchmark makes its numbers meaningless.
read -r I0_BUSY I0_ALL < <(box_ticks)
sleep 2
read -r I1_BUSY I1_ALL < <(box_ticks)
IDLE_BEFORE=$(awk -v b=$((I1_BUSY - I0_BUSY)) -v a=$((I1_ALL - I0_ALL)) 'BEGIN {printf "%.0f", (a > 0 ? 100 - 100 * b / a : 0)}')
log "CPU idle before the measurements: ${IDLE_BEFORE}%"
[ "$IDLE_BEFORE" -ge 90 ] || WARNINGS+=("WARNING: the box was only ${IDLE_BEFORE}% idle before the run: other work competes for the cores, numbers are noisy")

# ================================================================ 1. producer
log "1/4 producer: $EVENTS synthetic events through the Kafka sink into $TOPIC1 (3 partitions)"
TOPICS+=("$TOPIC1")
cpu_begin "kafka=$KAFKA_PID" "clickhouse=$CH_PID"
P_RC=0
"$PB" producer --brokers "$BROKERS" --topic "$TOPIC1" --events "$EVENTS" --partitions 3 \
  --spool-dir "$OUT/spool-producer" >"$OUT/producer.txt" 2>"$OUT/producer.err" || P_RC=$?
cpu_end
P_CPU=$CPU_LINE
noisy "1. producer"
P=$(grep '^events=' "$OUT/producer.txt" | tail -1 || true)
[ -n "$P" ] || die "producer failed (rc $P_RC): $(cat "$OUT/producer.err")"
log "producer: $P"
P_EPS=$(field events_per_s "$P")
P_DROPPED=$(field dropped "$P")
P_MSGS=$(field topic_messages "$P")
P_OK=$(at_least "$P_EPS" 50000)
P_COUNT_OK=OK
if [ "$P_DROPPED" != 0 ] || [ "$P_MSGS" != "$EVENTS" ] || [ "$P_RC" -ne 0 ]; then P_COUNT_OK=FAIL; fi

# ================================================================ 2. consumer
log "2/4 consumer: tollgate-metering on $TOPIC1 into $DB2 (group $GROUP2)"
cpu_begin "kafka=$KAFKA_PID" "clickhouse=$CH_PID"
C_T0=$(now_ms)
start_consumer "$TOPIC1" "$GROUP2" "$DB2" "$OUT/consumer.log"
CPU_NAMES+=("consumer=$CONSUMER_PID")
CPU0["consumer=$CONSUMER_PID"]=0
wait_rows "$DB2.usage_events" "$EVENTS" 300 "$C_T0" "$OUT/consumer.txt"
cpu_end
C_CPU=$CPU_LINE
noisy "2. consumer"
C_WR=$WR
log "consumer: $WR"
stop_pid "$CONSUMER_PID" 30
C_STOP_RC=$STOP_RC
read -r C_COUNT C_UNIQ < <(ch "SELECT count(), uniqExact(event_id) FROM $DB2.usage_events FORMAT TSV" || echo "? ?")
read -r C_MINUTE < <(ch "SELECT sum(requests) FROM $DB2.usage_by_minute FORMAT TSV" || echo "?")
read -r C_DAY < <(ch "SELECT sum(requests) FROM $DB2.usage_by_day FORMAT TSV" || echo "?")
read -r C_INSERTS < <(ch "SELECT uniqExact(inserted_at_ms) FROM $DB2.usage_events FORMAT TSV" || echo "?")
C_RPS=$(field rows_per_s "$WR")
C_WALL_RPS=$(field wall_rows_per_s "$WR")
if [ "$WR_RC" -ne 0 ] || [ -z "$C_RPS" ]; then
  C_RPS=${C_RPS:-0}
  C_WALL_RPS=${C_WALL_RPS:-0}
  log "consumer: not all rows arrived ($WR); see $OUT_REL/consumer.log"
fi
C_OK=$(at_least "$C_RPS" 50000)
C_COUNT_OK=OK
if [ "$C_COUNT" != "$EVENTS" ] || [ "$C_UNIQ" != "$EVENTS" ]; then C_COUNT_OK=FAIL; fi

# ================================================================ 3. lag
log "3/4 lag: nginx upstream :$UP_PORT, tollgate (Kafka sink, $TOPIC3) :$GW_PORT, consumer into $DB3"
MOCK_JSON='{"id":"chatcmpl-BenchAbc123Def456Ghi789Jkl","object":"chat.completion","created":1741570283,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":10,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_06737a9306"}'
UP_DIR="$OUT/nginx-upstream" # the static upstream of bench/run.sh ("direct"), same settings
mkdir -p "$UP_DIR/temp"
cat >"$UP_DIR/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $UP_DIR/nginx.pid;
error_log $UP_DIR/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $UP_DIR/temp/body;
    proxy_temp_path $UP_DIR/temp/proxy;
    fastcgi_temp_path $UP_DIR/temp/fastcgi;
    uwsgi_temp_path $UP_DIR/temp/uwsgi;
    scgi_temp_path $UP_DIR/temp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        location = $PATH_CHAT {
            default_type application/json;
            return 200 '$MOCK_JSON';
        }
        location / { return 404; }
    }
}
EOF
"$NGINX" -p "$UP_DIR/" -c "$UP_DIR/nginx.conf" -e "$UP_DIR/error.log" -t -q >&2 || die "nginx config test failed"
"$NGINX" -p "$UP_DIR/" -c "$UP_DIR/nginx.conf" -e "$UP_DIR/error.log" >"$UP_DIR/stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

KEY="tg-bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
GW_CONFIG="$OUT/tollgate.toml"
cat >"$GW_CONFIG" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"
[kafka]
brokers = "$BROKERS"
topic = "$TOPIC3"
spool_dir = "$OUT_REL/spool-gateway"
[providers.nginx]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$UP_PORT/v1"
[models."gpt-4o-mini"]
deployments = [{ provider = "nginx", model = "gpt-4o-mini" }]
[keys.bench]
sha256 = "$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)"
models = ["*"]
EOF
"$TOLLGATE" --config "$GW_CONFIG" check >&2 || die "the generated tollgate config is invalid ($GW_CONFIG)"
TOPICS+=("$TOPIC3")
"$PB" create-topics --brokers "$BROKERS" --partitions 3 "$TOPIC3" >&2 || die "cannot create $TOPIC3"
start_consumer "$TOPIC3" "$GROUP3" "$DB3" "$OUT/consumer-lag.log"
"$TOLLGATE" --config "$GW_CONFIG" >"$OUT/tollgate.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
log "tollgate: pid $GW_PID ($GW_CONFIG)"
for i in $(seq 1 100); do
  kill -0 "$GW_PID" 2>/dev/null || die "tollgate exited during start-up (see $OUT_REL/tollgate.log)"
  [ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$GW_PORT/readyz" 2>/dev/null)" = 200 ] && break
  [ "$i" -lt 100 ] || die "tollgate is not ready after 10 s"
  sleep 0.1
done
# One request end to end, and wait for its row: the consumer has migrated and joined its group before the load.
answer=$(curl -sS --noproxy '*' --fail-with-body --max-time 5 -X POST "http://127.0.0.1:$GW_PORT$PATH_CHAT" \
  -H 'Content-Type: application/json' -H "Authorization: Bearer $KEY" --data-binary "@$OUT/body.json") ||
  die "the test request through tollgate failed: $answer"
wait_rows "$DB3.usage_events" 1 60 "$(now_ms)" "$OUT/lag-warmup.txt"
[ "$WR_RC" -eq 0 ] || die "the test request's row did not reach ClickHouse within 60 s ($WR); see $OUT_REL/consumer-lag.log"
log "lag: pipeline flowing (first row after $(field all_visible_after_ms "$WR") ms); load: $RATE req/s for ${DURATION}s"

LOAD_T0=$(now_ms)
cpu_begin "kafka=$KAFKA_PID" "clickhouse=$CH_PID" "consumer=$CONSUMER_PID" "tollgate=$GW_PID" "nginx=$(pgrep -P "$NGINX_PID" | head -1)"
LG_RC=0
"$LOADGEN" --url "http://127.0.0.1:$GW_PORT$PATH_CHAT" --rate "$RATE" --duration-secs "$DURATION" --connections "$CONNS" \
  --header 'Content-Type: application/json' --header "Authorization: Bearer $KEY" \
  --body-file "$OUT/body.json" >"$OUT/loadgen.txt" 2>"$OUT/loadgen.err" || LG_RC=$?
LOAD_T1=$(now_ms)
LG=$(grep '^rate=' "$OUT/loadgen.txt" | tail -1 || true)
[ -n "$LG" ] || die "tollgate-loadgen failed (rc $LG_RC): $(cat "$OUT/loadgen.err")"
log "loadgen: $LG"
LG_OK=$(field ok "$LG")
ANSWERED=$((LG_OK + 1)) # + the test request
# Everything the gateway emitted must reach ClickHouse; wait for it (2 minutes at most).
SINK_JSON=$(curl -sS --noproxy '*' --max-time 2 "http://127.0.0.1:$GW_PORT/readyz" || echo '{}')
read -r G_EMITTED G_WRITTEN G_DROPPED G_SPOOLED G_REPLAYED < <(printf '%s' "$SINK_JSON" | python3 -c '
import json, sys
s = json.load(sys.stdin).get("sink", {})
print(*(s.get(k, "?") for k in ("emitted", "written", "dropped", "spooled", "replayed")))
')
[ "$G_EMITTED" != "?" ] || die "cannot read tollgate's /readyz: $SINK_JSON"
wait_rows "$DB3.usage_events" "$G_EMITTED" 120 "$LOAD_T1" "$OUT/lag-drain.txt"
cpu_end
L_CPU=$CPU_LINE
noisy "3. lag"
log "lag: $WR"
SINK_JSON=$(curl -sS --noproxy '*' --max-time 2 "http://127.0.0.1:$GW_PORT/readyz" || echo '{}')
read -r G_EMITTED G_WRITTEN G_DROPPED G_SPOOLED G_REPLAYED < <(printf '%s' "$SINK_JSON" | python3 -c '
import json, sys
s = json.load(sys.stdin).get("sink", {})
print(*(s.get(k, "?") for k in ("emitted", "written", "dropped", "spooled", "replayed")))
')
L_DRAIN_MS=$(field all_visible_after_ms "$WR")
read -r L_ROWS L_UNIQ < <(ch "SELECT count(), uniqExact(event_id) FROM $DB3.usage_events FORMAT TSV" || echo "? ?")
# Lag of the rows of the load (the test request's row excluded): the consumer stamps inserted_at_ms right before
# its INSERT; finished_at_ms is when the gateway sent the answer's last byte.
read -r L_N L_P50 L_P90 L_P99 L_MAX L_AVG L_INSERTS < <(ch "
  SELECT count(), quantileExact(0.5)(lag), quantileExact(0.9)(lag), quantileExact(0.99)(lag), max(lag),
         round(avg(lag), 1), uniqExact(ins)
  FROM (SELECT toInt64(inserted_at_ms) - toInt64(finished_at_ms) AS lag, inserted_at_ms AS ins
        FROM $DB3.usage_events WHERE started_at_ms >= $LOAD_T0)
  FORMAT TSV" || echo "? ? ? ? ? ? ?")
stop_pid "$GW_PID" 30
stop_pid "$CONSUMER_PID" 30
stop_pid "$NGINX_PID" 10
L_OK=MISS
if [[ "$L_P99" =~ ^-?[0-9]+$ ]]; then L_OK=$(at_most "$L_P99" 2000); fi
L_COUNT_OK=OK
if [ "$L_ROWS" != "$ANSWERED" ] || [ "$L_ROWS" != "$G_EMITTED" ] || [ "$L_UNIQ" != "$L_ROWS" ] ||
  [ "$G_DROPPED" != 0 ] || [ "$LG_RC" -ne 0 ]; then
  L_COUNT_OK=FAIL
fi

# ================================================================ 4. gateway RPS (bench/run.sh with the Kafka target)
R_RC=skipped
if [ "${PIPELINE_RUN_SH:-1}" != 0 ]; then
  log "4/4 gateway RPS: BENCH_KAFKA=1 bash bench/run.sh (log: $OUT_REL/run-sh.log)"
  R_RC=0
  BENCH_KAFKA=1 BENCH_SKIP_BUILD=1 bash "$ROOT/bench/run.sh" >"$OUT/run-sh.txt" 2>"$OUT/run-sh.log" || R_RC=$?
  [ "$R_RC" -eq 0 ] || log "bench/run.sh exited with status $R_RC (see $OUT_REL/run-sh.log)"
fi

# ================================================================ report
{
  echo
  echo "Tollgate usage-pipeline benchmark — $(date -u '+%Y-%m-%d %H:%M:%SZ'), $NCPU cores, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- gateway metering-consumer 2>/dev/null || echo '+dirty')"
  echo "Kafka $BROKERS (scripts/services.sh, 1 broker), ClickHouse $CH_VERSION $CH_URL; run id $RUN_ID; raw outputs in $OUT_REL/"
  echo "Kafka, ClickHouse, the gateway, the consumer and the load generators all share the same $NCPU cores."
  for w in "${WARNINGS[@]}"; do echo "$w"; done
  echo
  echo "1. producer: $EVENTS synthetic UsageEvents through the gateway's Kafka sink (acks=all, lz4, linger 5 ms) into a fresh 3-partition topic"
  printf '   %s events/s (target >= 50000) [%s]   %s s, sink: emitted=%s written=%s dropped=%s spooled=%s replayed=%s; topic holds %s -> count check %s\n' \
    "$P_EPS" "$P_OK" "$(field elapsed_s "$P")" "$(field emitted "$P")" "$(field written "$P")" "$P_DROPPED" \
    "$(field spooled "$P")" "$(field replayed "$P")" "$P_MSGS" "$P_COUNT_OK"
  echo "   cpu: producer=$(field cpu_s "$P")s $P_CPU"
  echo "2. consumer: tollgate-metering ${CONSUMER_ARGS[*]:-(default batches: 20000 rows / 16 MiB / 300 ms)} on that topic, fresh group and database"
  printf '   %s rows/s first->all visible (target >= 50000) [%s]   first rows (%s) visible %s ms after start, all %s after %s ms (%s ms first->all)\n' \
    "$C_RPS" "$C_OK" "$(field first_visible_rows "$C_WR")" "$(field first_visible_after_ms "$C_WR")" \
    "$EVENTS" "$(field all_visible_after_ms "$C_WR")" "$(field first_to_all_ms "$C_WR")"
  printf '   %s rows/s over the wall time incl. start-up; count()=%s uniqExact(event_id)=%s (expect %s) -> %s; usage_by_minute/day requests=%s/%s; %s INSERTs; consumer exit %s\n' \
    "$C_WALL_RPS" "$C_COUNT" "$C_UNIQ" "$EVENTS" "$C_COUNT_OK" "$C_MINUTE" "$C_DAY" "$C_INSERTS" "$C_STOP_RC"
  echo "   cpu: $C_CPU"
  echo "3. lag: tollgate (Kafka sink) -> Kafka -> tollgate-metering -> ClickHouse, tollgate-loadgen $RATE req/s x ${DURATION}s (non-streaming chat, nginx static upstream)"
  printf '   inserted_at_ms - finished_at_ms over %s rows: p50 %s ms, p90 %s ms, p99 %s ms (target <= 2000) [%s], max %s ms, avg %s ms; %s INSERTs\n' \
    "$L_N" "$L_P50" "$L_P90" "$L_P99" "$L_OK" "$L_MAX" "$L_AVG" "$L_INSERTS"
  printf '   rows=%s uniq=%s, requests answered=%s (loadgen ok %s + 1 test), gateway emitted=%s written=%s dropped=%s spooled=%s -> count check %s; last row in %s ms after the load ended\n' \
    "$L_ROWS" "$L_UNIQ" "$ANSWERED" "$LG_OK" "$G_EMITTED" "$G_WRITTEN" "$G_DROPPED" "$G_SPOOLED" "$L_COUNT_OK" "$L_DRAIN_MS"
  echo "   client side: $(printf '%s' "$LG" | tr ' ' '\n' | grep -E '^(p50_ms|p99_ms|max_ms|errors|achieved_rps)=' | paste -sd' ')"
  echo "   cpu during load + drain: $L_CPU"
  echo "4. gateway RPS with the Kafka sink vs the embedded sink vs nginx proxy (BENCH_KAFKA=1 bash bench/run.sh, exit $R_RC):"
  if [ "$R_RC" != skipped ] && [ -s "$OUT/run-sh.txt" ]; then
    sed -e '/^$/d' -e 's/^/   /' "$OUT/run-sh.txt"
  fi
}

[ "$P_COUNT_OK" = OK ] && [ "$C_COUNT_OK" = OK ] && [ "$L_COUNT_OK" = OK ] && { [ "$R_RC" = skipped ] || [ "$R_RC" = 0 ]; }
