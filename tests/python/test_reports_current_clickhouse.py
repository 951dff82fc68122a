"""The ClickHouse report SQL runs on *current* ClickHouse too (the Rust test covers the 18.16 server here).

`chdb-core` (an embedded current ClickHouse) is put behind a tiny HTTP endpoint that speaks the part of
ClickHouse's HTTP interface the gateway uses (POST a query, read the body), the migrations are applied, rows
and a cost correction are inserted, and the real gateway binary — configured with `[reports] clickhouse_url`
pointing there — must answer `/admin/usage` with the sums computed here from the same rows.

Run: `.venv/bin/pytest tests/python/test_reports_current_clickhouse.py -q`.
"""

from __future__ import annotations

import hashlib
import http.server
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
from chdb import session as chdb_session

from conftest import _binary, _drain, _free_port, _stop
from test_clickhouse_ddl import MIGRATIONS, apply, statements

ADMIN_KEY = "tg-current-clickhouse-admin-0123456789"
DB = "tg_reports"
FORMAT = " FORMAT JSONEachRow"


def serve_chdb(session) -> tuple[http.server.ThreadingHTTPServer, int]:
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            sql = self.rfile.read(int(self.headers["Content-Length"])).decode()
            try:
                assert sql.endswith(FORMAT), sql
                with lock:
                    body = session.query(sql[: -len(FORMAT)], "JSONEachRow").bytes()
                status = 200
            except Exception as e:  # the gateway reports ClickHouse's error text
                body, status = str(e).encode(), 500
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_reports_run_on_current_clickhouse(tmp_path: Path) -> None:
    session = chdb_session.Session()
    session.query(f"CREATE DATABASE IF NOT EXISTS {DB}")
    for f in sorted(MIGRATIONS.glob("*.sql")):
        for statement in statements(f.read_text(), DB):
            apply(session, statement)
    base_ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    rows = []
    for i in range(12):
        rows.append({
            "id": str(uuid.uuid4()), "ms": base_ms + i * 1_800_000 + i, "key": ["alpha", "beta", "o'brien"][i % 3],
            "model": ["gpt-4o", "qwen"][i % 2], "outcome": "success" if i % 5 else "upstream_error",
            "prompt": 10 + i, "completion": 3 * i, "cost": 1_000_000_007 * i + 13, "tag": ["summarize", "chat"][i % 2],
        })
    values = ", ".join(
        f"('{r['id']}', toDateTime({r['ms'] // 1000}), {r['ms']}, 'acme', '{r['key'].replace(chr(39), chr(92) + chr(39))}', "
        f"'{r['model']}', '{r['outcome']}', {r['prompt']}, {r['completion']}, {r['cost']}, 'USD', ['feature'], ['{r['tag']}'])"
        for r in rows
    )
    session.query(
        f"INSERT INTO {DB}.usage_events (event_id, started_at, started_at_ms, tenant, key_id, model, outcome, "
        f"prompt_tokens, completion_tokens, reporting_cost_nanos, reporting_currency, tag_keys, tag_values) VALUES {values}"
    )
    corrected = rows[4]
    session.query(
        f"INSERT INTO {DB}.cost_corrections (correction_id, event_id, started_at, reporting_currency, "
        f"delta_reporting_cost_nanos) VALUES ('c1', '{corrected['id']}', toDateTime({corrected['ms'] // 1000}), 'USD', -999)"
    )
    corrected["cost"] -= 999

    server, ch_port = serve_chdb(session)
    mock = subprocess.Popen([str(_binary("TOLLGATE_MOCK_BIN", "tollgate-mock-upstream")), "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert mock.stdout is not None
    mock_port = int(mock.stdout.readline().rsplit(":", 1)[1])
    port = _free_port()
    config = tmp_path / "tollgate.toml"
    config.write_text("\n".join([
        "[server]", f'listen = "127.0.0.1:{port}"',
        "[store]", f'path = "{tmp_path / "usage.db"}"',
        "[admin]", f'sha256 = "{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}"',
        "[reports]", f'clickhouse_url = "http://127.0.0.1:{ch_port}"', f'clickhouse_database = "{DB}"',
        "[providers.mock]", 'kind = "openai"', f'base_url = "http://127.0.0.1:{mock_port}/openai/v1"',
        'api_keys = ["sk"]',
        '[models."gpt-4o"]', 'deployments = [{ provider = "mock", model = "gpt-4o" }]',
    ]) + "\n")
    proc = subprocess.Popen([str(_binary("TOLLGATE_BIN", "tollgate")), "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs: list[str] = []
    threading.Thread(target=_drain, args=(proc.stdout, logs), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "".join(logs)
            time.sleep(0.05)
        params = {"from": str(base_ms), "to": str(base_ms + 86_400_000), "group_by": "key,tag:feature",
                  "bucket": "hour", "model": "qwen"}
        r = httpx.get(f"{base}/admin/usage", params=params, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["backend"] == "clickhouse"
        want: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        for row in rows:
            if row["model"] != "qwen":
                continue
            key = (row["ms"] // 3_600_000 * 3_600_000, row["key"], row["tag"])
            s = want[key]
            s[0] += 1
            s[1] += row["outcome"] != "success"
            s[2] += row["prompt"]
            s[3] += row["completion"]
            s[4] += row["cost"]
        got = {
            (row["bucket_start_ms"], row["dimensions"]["key"], row["dimensions"]["tag:feature"]):
                [row["requests"], row["errors"], row["prompt_tokens"], row["completion_tokens"], int(row["cost_nanos"])]
            for row in report["rows"]
        }
        assert got == dict(want)
        assert report["totals"][0]["cost_nanos"] == sum(s[4] for s in want.values())
        # The corrected event (a gpt-4o one) counts with its delta in the unfiltered total.
        everything = httpx.get(f"{base}/admin/usage", params={"from": str(base_ms), "to": str(base_ms + 86_400_000)},
                               headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30).json()
        assert everything["totals"][0]["cost_nanos"] == sum(row["cost"] for row in rows)
        assert everything["totals"][0]["requests"] == len(rows)
    finally:
        code = _stop(proc)
        _stop(mock, signal.SIGINT)
        server.shutdown()
    assert code == 0, "".join(logs)
