"""A real Prometheus server (Debian's `prometheus` package) scrapes the gateway's `/metrics`.

Run: `.venv/bin/pytest tests/python/test_prometheus.py -q` (scripts/test.sh installs prometheus).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import Gateway

SERIES = [
    "tollgate_requests_total",
    "tollgate_request_duration_seconds_bucket",
    "tollgate_time_to_first_byte_seconds_bucket",
    "tollgate_tokens_total",
    "tollgate_upstream_attempts_total",
    "tollgate_sink_emitted_total",
    "tollgate_sink_dropped_total",
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


def test_prometheus_scrapes_the_gateway_and_sees_its_traffic(gateway: Gateway) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "the prometheus server is missing (scripts/test.sh installs Debian's package)"
    gateway.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "scrape me"}])
    target = urllib.parse.urlparse(gateway.base_url).netloc
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: tollgate\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
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
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
