"""A real Prometheus server (Debian's `prometheus` package) scrapes the gateway's and the metering consumer's
`/metrics`.

Run: `.venv/bin/pytest tests/python/test_prometheus.py -q` (scripts/test.sh installs prometheus). The consumer
(`target/debug/tollgate-metering`, or `TOLLGATE_METERING_BIN`) is pointed at the services of
`scripts/services.sh`; its series exist from the start, so the check does not depend on them being up.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import REPO, Gateway, _drain, _stop

SERIES = [
    "tollgate_requests_total",
    "tollgate_request_duration_seconds_bucket",
    "tollgate_time_to_first_byte_seconds_bucket",
    "tollgate_tokens_total",
    "tollgate_upstream_attempts_total",
    "tollgate_sink_emitted_total",
    "tollgate_sink_dropped_total",
]

METERING_SERIES = [
    "tollgate_metering_records_consumed_total",
    "tollgate_metering_rows_inserted_total",
    "tollgate_metering_duplicates_dropped_total",
    "tollgate_metering_dead_lettered_total",
    "tollgate_metering_batches_total",
    "tollgate_metering_insert_duration_seconds_bucket",
    "tollgate_metering_insert_failures_total",
    "tollgate_metering_commits_total",
    "tollgate_metering_pipeline_lag_seconds_bucket",
    "tollgate_metering_assigned_partitions",
    "tollgate_metering_clickhouse_up",
    "tollgate_metering_budget_owner_partitions_missing",
    "tollgate_metering_budget_owner_active",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


CLICKHOUSE_URL = os.environ.get("TOLLGATE_CLICKHOUSE_URL", "http://127.0.0.1:18123")


def start_metering() -> tuple[subprocess.Popen[str], str, list[str], str]:
    """Starts the consumer on its own topic, group and database; returns it, its HTTP address, its log and its
    database."""
    binary = Path(os.environ.get("TOLLGATE_METERING_BIN") or REPO / "target" / "debug" / "tollgate-metering")
    assert binary.is_file(), f"{binary} not found: run `cargo build --workspace`"
    suffix = f"prom_{os.getpid()}_{int(time.time())}"
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [str(binary), "--brokers", os.environ.get("TOLLGATE_KAFKA_BROKERS", "127.0.0.1:19092"),
         "--clickhouse-url", CLICKHOUSE_URL,
         "--topic", f"tollgate.usage.test.{suffix}", "--group", f"tollgate-metering-{suffix}",
         "--database", f"tg_{suffix}", "--http-addr", addr],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TOLLGATE_LOG": "info"},
    )
    logs: list[str] = []
    threading.Thread(target=_drain, args=(proc.stdout, logs), daemon=True).start()
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, "tollgate-metering exited:\n" + "".join(logs)
        try:
            with urllib.request.urlopen(f"http://{addr}/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "tollgate-metering /healthz never answered:\n" + "".join(logs)
        time.sleep(0.1)
    return proc, addr, logs, f"tg_{suffix}"


def drop_database(database: str) -> None:
    """Best effort: the consumer created it if ClickHouse was up."""
    try:
        urllib.request.urlopen(
            urllib.request.Request(CLICKHOUSE_URL, data=f"DROP DATABASE IF EXISTS {database}".encode()), timeout=5
        ).close()
    except OSError:
        pass


def test_prometheus_scrapes_the_gateway_and_the_consumer(gateway: Gateway) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "the prometheus server is missing (scripts/test.sh installs Debian's package)"
    gateway.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "scrape me"}])
    target = urllib.parse.urlparse(gateway.base_url).netloc
    metering, metering_addr, metering_logs, database = start_metering()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: tollgate\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
            "  - job_name: metering\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{metering_addr}']\n"
        )
        log = open(Path(tmp) / "prometheus.log", "w")
        proc = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            found: list[dict] = []
            while time.monotonic() < deadline:
                try:
                    found = query(port, 'tollgate_requests_total{model="gpt-4o-mini",outcome="success"} > 0')
                except OSError:
                    found = []
                if found:
                    break
                time.sleep(0.5)
            assert found, "Prometheus never scraped a successful request: " + (Path(tmp) / "prometheus.log").read_text()[-2000:]
            up = query(port, 'up{job="tollgate"}')
            assert up and up[0]["value"][1] == "1"
            for series in SERIES:
                assert query(port, series), f"{series} is not in Prometheus"
            deadline = time.monotonic() + 30
            while not query(port, 'up{job="metering"} == 1') and time.monotonic() < deadline:
                time.sleep(0.5)
            assert query(port, 'up{job="metering"} == 1'), "Prometheus never scraped tollgate-metering"
            for series in METERING_SERIES:
                assert query(port, f'{series}{{job="metering"}}'), f"{series} is not in Prometheus"
            # Labelled series exist at zero before anything happened, one per label value.
            stages = {r["metric"]["stage"] for r in query(port, "tollgate_metering_duplicates_dropped_total")}
            assert stages == {"batch", "recent", "clickhouse"}, stages
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
            code = _stop(metering)
            drop_database(database)
            assert code == 0, "tollgate-metering did not stop cleanly:\n" + "".join(metering_logs)
