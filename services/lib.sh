# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this file
# Shared by scripts/services.sh and scripts/services-stop.sh (sourced, not run).
# Everything here binds to 127.0.0.1 only. See services/README.md.

TG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TG_STATE="$TG_ROOT/.tollgate/services"
TG_CACHE="${TOLLGATE_CACHE:-${HOME:-/root}/.cache/tollgate}"
TG_TIMEOUT="${TOLLGATE_SERVICES_TIMEOUT:-120}"

KAFKA_VERSION="${TOLLGATE_KAFKA_VERSION:-4.1.0}"
KAFKA_PORT="${TOLLGATE_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${TOLLGATE_KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP_OPTS="${TOLLGATE_KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
KAFKA_LIBS="$TG_CACHE/kafka-$KAFKA_VERSION/libs"
KAFKA_DIR="$TG_STATE/kafka"
KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
KAFKA_CONFIG="$KAFKA_DIR/config/server.properties"
KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

CH_HTTP_PORT="${TOLLGATE_CLICKHOUSE_HTTP_PORT:-18123}"
CH_TCP_PORT="${TOLLGATE_CLICKHOUSE_TCP_PORT:-19000}"
CH_DIR="$TG_STATE/clickhouse"
CH_PID_FILE="$CH_DIR/clickhouse.pid"
CH_CONFIG="$CH_DIR/etc/config.xml"
CH_URL="http://127.0.0.1:$CH_HTTP_PORT"

say() { printf '[services] %s\n' "$*"; }
warn() { printf '[services] WARNING: %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%01ds' $((d / 1000)) $(((d % 1000) / 100)); }

# Serialise start/stop runs (two test runners starting services at once must not start two brokers).
# fd 9 holds the lock: the servers are started with 9>&- so that they do not inherit it.
tg_lock() {
  mkdir -p "$TG_STATE"
  exec 9>"$TG_STATE/.lock"
  flock -w 300 9 || die "another scripts/services*.sh run holds $TG_STATE/.lock (waited 300s)"
}

# True if pid is a live process (a zombie that nobody reaped counts as dead).
pid_alive() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ "$state" != "Z" && "$state" != "X" ]]
}

# The pid from a pid file if that process is alive and still runs the given config file; else nothing.
live_pid() {
  local file="$1" marker="$2" pid
  [[ -f "$file" ]] || return 0
  pid="$(tr -dc '0-9' <"$file")"
  if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"; then
    echo "$pid"
  fi
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# A Kafka metadata round trip in pure bash (no JVM, a few ms): Metadata v4 request for all topics, correlation
# id 7; true if the answer carries that id and lists at least one broker. A broker only accepts client
# connections once it is registered and unfenced, so this is the readiness check too.
kafka_probe() {
  local out
  out="$(timeout 3 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/'"$1"' || exit 1
    printf "\x00\x00\x00\x13\x00\x03\x00\x04\x00\x00\x00\x07\x00\x04tgup\xff\xff\xff\xff\x00" >&3
    head -c 16 <&3 | od -An -tx1' 2>/dev/null)" || return 1
  out="${out//[[:space:]]/}"
  # size(4) correlation_id(4) throttle_time_ms(4) broker_count(4)
  [[ "${out:8:8}" == "00000007" && "${out:24:8}" =~ ^[0-9a-f]{8}$ && "${out:24:8}" != "00000000" ]]
}

ch_probe() {
  [[ "$(curl -s --max-time 3 "$CH_URL/?query=SELECT%201" 2>/dev/null)" == "1" ]]
}

log_tail() {
  local f
  for f in "$@"; do
    [[ -s "$f" ]] || continue
    printf '[services] ---- last lines of %s ----\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}

# Send TERM, wait up to $3 seconds, then KILL. Returns once the process is gone.
stop_pid() {
  local pid="$1" name="$2" wait_s="${3:-60}" i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  warn "$name (pid $pid) still running after ${wait_s}s: sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  die "$name (pid $pid) did not exit"
}

wait_port_free() {
  local port="$1" i
  for ((i = 0; i < 100; i++)); do
    port_open "$port" || return 0
    sleep 0.1
  done
  warn "port 127.0.0.1:$port still accepts connections"
}

# apt-get install, quietly, as root; refreshes the package lists once if the first try fails.
apt_install() {
  [[ "$(id -u)" == 0 ]] || die "need root to run: apt-get install -y $*"
  command -v apt-get >/dev/null || die "no apt-get: install $* by hand"
  local log="$TG_STATE/apt.log"
  mkdir -p "$TG_STATE"
  say "apt-get install $* (log: $log)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "$@" >"$log" 2>&1; then
    say "apt-get install failed; running apt-get update and retrying"
    { apt-get update -q && apt-get install -y -q "$@"; } >>"$log" 2>&1 || { log_tail "$log"; die "apt-get install $* failed"; }
  fi
}

# JVM + classpath for Kafka's command-line classes (TopicCommand, StorageTool, console producer/consumer):
#   "${KAFKA_TOOL[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --list
KAFKA_TOOL=(java -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto
  "-Dlog4j2.configurationFile=$TG_ROOT/services/kafka/tools-log4j2.properties"
  -cp "$KAFKA_LIBS/*")
