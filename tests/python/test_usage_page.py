"""The usage page (`GET /admin/usage/page`) in a real headless Chromium, after real traffic from the openai SDK.

Starts its own gateway (with `[admin]` and two keys) in front of the mock upstream, sends requests with both
keys to two models, then lets Chromium run the page's JavaScript (`--virtual-time-budget`) with the admin key
in the URL fragment and checks the rendered DOM: the charts' series and the totals table name every key and
model, and the grand total is the exact decimal sum of the stored events' costs (summed here from the SQLite
store, independently of the API). A screenshot goes to target/test-artifacts/usage-page.png.

Run: `.venv/bin/pytest tests/python/test_usage_page.py -q` (needs /usr/bin/chromium: scripts/test.sh installs it).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from conftest import REPO, _binary, _drain, _free_port, _stop

ADMIN_KEY = "tg-usage-page-admin-0123456789abcdefghij"
KEYS = {"alpha": "tg-usage-page-alpha-0123456789abcdefgh", "beta": "tg-usage-page-beta-0123456789abcdefghi"}
MODELS = ["gpt-4o-mini", "gpt-4o"]
ARTIFACTS = REPO / "target" / "test-artifacts"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is missing (scripts/test.sh installs Debian's package)"
    return path


@pytest.fixture(scope="module")
def page_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("usage-page")
    mock = subprocess.Popen([str(_binary("TOLLGATE_MOCK_BIN", "tollgate-mock-upstream")), "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert mock.stdout is not None
    mock_port = int(mock.stdout.readline().rsplit(":", 1)[1])
    port = _free_port()
    db = tmp / "usage.db"
    lines = [
        "[server]", f'listen = "127.0.0.1:{port}"',
        "[store]", f'path = "{db}"',
        "[admin]", f'sha256 = "{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}"',
        "[providers.mock]", 'kind = "openai"', f'base_url = "http://127.0.0.1:{mock_port}/openai/v1"',
        'api_keys = ["sk-upstream"]',
    ]
    for model in MODELS:
        lines += [f'[models."{model}"]', f'deployments = [{{ provider = "mock", model = "{model}" }}]']
    for name, key in KEYS.items():
        lines += [f"[keys.{name}]", 'tenant = "acme"', f'sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"',
                  'models = ["*"]']
    config = tmp / "tollgate.toml"
    config.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([str(_binary("TOLLGATE_BIN", "tollgate")), "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs: list[str] = []
    threading.Thread(target=_drain, args=(proc.stdout, logs), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start:\n" + "".join(logs)
        time.sleep(0.05)
    try:
        yield base, db
    finally:
        code = _stop(proc)
        _stop(mock, signal.SIGINT)  # the mock exits cleanly on SIGINT only
        assert code == 0, "".join(logs)


def stored_total(db: Path, expected_rows: int) -> tuple[int, str]:
    """(row count, exact decimal total of reporting_cost_nanos) from the store, once every event is written."""
    deadline = time.monotonic() + 5
    while True:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            count, nanos = conn.execute("SELECT count(*), sum(reporting_cost_nanos) FROM usage_events").fetchone()
        finally:
            conn.close()
        if count >= expected_rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    total = Decimal(nanos or 0) / Decimal(1_000_000_000)
    text = format(total.normalize(), "f") if total else "0"
    return count, text


def run_chromium(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--window-size=1280,900", *extra, url],
            capture_output=True, text=True, timeout=120,
        )


def test_usage_page_charts_and_totals_show_the_traffic(page_gateway: tuple[str, Path]) -> None:
    base, db = page_gateway
    sent = 0
    for name, key in KEYS.items():
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        for model in MODELS:
            for _ in range(2 if name == "alpha" else 1):
                r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hi {name}"}])
                assert r.usage is not None and r.usage.total_tokens > 0
                sent += 1
    count, total = stored_total(db, sent)
    assert count == sent
    assert total != "0", "the mock's models are priced: the total must not be zero"

    # Without the key the page asks for it and shows no data.
    bare = run_chromium(f"{base}/admin/usage/page", "--dump-dom")
    assert bare.returncode == 0, bare.stderr[-2000:]
    assert 'data-state="needs-key"' in bare.stdout

    dom = run_chromium(f"{base}/admin/usage/page#key={ADMIN_KEY}", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert 'data-state="ready"' in text, re.findall(r'id="status"[^>]*>[^<]*', text)
    assert ADMIN_KEY not in text, "the key must not stay in the page or its URL"
    for chart, names in [("chart-spend-key", KEYS), ("chart-tokens-key", KEYS),
                         ("chart-spend-model", MODELS), ("chart-tokens-model", MODELS)]:
        section = text.split(f'id="{chart}"', 1)[1].split("</section>", 1)[0]
        assert section.count('class="bar"') >= len(names), chart
        for name in names:
            assert f'class="series" data-series="{name}"' in section, (chart, name)
    table = text.split('id="totals"', 1)[1].split("</table>", 1)[0]
    for name in KEYS:
        for model in MODELS:
            assert f'data-key="{name}" data-model="{model}"' in table, (name, model)
    grand = re.findall(r'class="cost grand-total">([^<]*)<', table)
    assert grand == [f"{total} USD"], (grand, total)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "usage-page.png"
    shot.unlink(missing_ok=True)
    png = run_chromium(f"{base}/admin/usage/page#key={ADMIN_KEY}&range=1h", f"--screenshot={shot}")
    assert png.returncode == 0, png.stderr[-2000:]
    assert shot.stat().st_size > 10_000
