"""Every query Tollgate ships for analysts runs, and returns data, on ClickHouse 18.16 and current ClickHouse.

The queries: every panel and template variable of `dashboards/json/*.json` (Grafana, plugin
`grafana-clickhouse-datasource`) and every ```sql block of `docs/analytics.md`. The data: made by the real
pipeline — the `tollgate` gateway (with `[kafka]`) in front of `tollgate-mock-upstream`, Kafka, and
`tollgate-metering` writing into a fresh database on the ClickHouse 18.16 server of `scripts/services.sh`. The
same raw rows are then inserted into an embedded current ClickHouse (`chdb-core`) whose schema comes from
`schemas/migrations/clickhouse/*.sql`, so the materialized views there rebuild the aggregates themselves.

Each query must return at least one row with a non-zero number in it (the traffic is shaped so every panel has
something to show), the "All" and the "every value ticked" variable selections must agree, both engines must
return as many rows, and the spend panels must add up to `sum(reporting_cost_nanos)` of the raw rows plus the
re-pricing corrections, to the nano-unit. Budgets are set through the admin API and reach `budgets` through the
control topic and tollgate-metering (as does a key issued, used and revoked through it, into `virtual_keys`); one
known `cost_corrections` row is inserted directly.

Grafana expansion is reproduced by `expand()` below, in the plugin's order: `$__conditionalAll(...)` (frontend),
template variables, then the backend macros of grafana-clickhouse-datasource 4.x. Supported:

  $__conditionalAll(<phrase>, $var)   -> 1=1 when `var` is All (or empty), else <phrase>
  ${var:singlequote}                  -> 'a','b' (quotes and backslashes escaped)
  ${var} / $var                       -> the raw value(s), comma-joined
  $__timeFilter(col)                  -> col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)
  $__dateFilter(col)                  -> col >= toDate('<from day>') AND col <= toDate('<to day>')
  $__fromTime / $__toTime             -> toDateTime(<from s>) / toDateTime(<to s>)
  $__interval_s                       -> the panel interval in whole seconds (at least 1)

Anything else (`$__timeInterval`, which needs toStartOfInterval, the `_ms` macros, which need DateTime64, an
unknown macro or a variable left over) fails the test: neither is available on 18.16.

Needs the services (`bash scripts/services.sh`) and the binaries (`cargo build --workspace`);
`TOLLGATE_BIN`, `TOLLGATE_MOCK_BIN`, `TOLLGATE_METERING_BIN`, `TOLLGATE_KAFKA_BROKERS` and
`TOLLGATE_CLICKHOUSE_URL` override the defaults. Run: `.venv/bin/pytest tests/python/test_dashboards.py -q`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from chdb import session as chdb_session

from conftest import REPO, _binary, _free_port, _stop
from test_clickhouse_ddl import MIGRATIONS, apply, statements

DASHBOARDS = sorted((REPO / "dashboards" / "json").glob("*.json"))
GUIDE = REPO / "docs" / "analytics.md"
BROKERS = os.environ.get("TOLLGATE_KAFKA_BROKERS", "127.0.0.1:19092")
CLICKHOUSE = os.environ.get("TOLLGATE_CLICKHOUSE_URL", "http://127.0.0.1:18123")
ALL = "$__all"

# ------------------------------------------------------------------------------------------ the queries


@dataclass(frozen=True)
class Query:
    source: str  # "tollgate.json: Cost by tenant"
    sql: str
    kind: str  # panel | variable | guide


def dashboard_queries() -> list[Query]:
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        panels = []
        for p in board["panels"]:
            panels.append(p)
            panels.extend(p.get("panels", []))  # collapsed rows keep their panels inside
        for p in panels:
            for t in p.get("targets", []):
                out.append(Query(f"{path.name}: {p['title']} [{t['refId']}]", t["rawSql"], "panel"))
        for v in board["templating"]["list"]:
            if v["type"] == "query":
                out.append(Query(f"{path.name}: variable {v['name']}", v["query"]["rawSql"], "variable"))
    return out


def guide_queries() -> list[Query]:
    text = GUIDE.read_text()
    out = []
    for m in re.finditer(r"^### (.+?)$|^```sql\n(.*?)^```", text, re.M | re.S):
        if m.group(1):
            heading = m.group(1).strip()
        else:
            out.append(Query(f"analytics.md: {heading}", m.group(2), "guide"))
    return out


def variables(board_path: Path) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in json.loads(board_path.read_text())["templating"]["list"]}


# ------------------------------------------------------------------------------------------ the expander

MACRO_ARGS = {"timeFilter": 1, "dateFilter": 1, "fromTime": 0, "toTime": 0, "interval_s": 0}


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of a macro call whose '(' is at `open_paren`, split at top-level commas (the plugin's rule)."""
    depth, start, args = 0, open_paren + 1, []
    for i in range(open_paren, len(sql)):
        c = sql[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
    raise AssertionError(f"unbalanced macro call: {sql[open_paren:open_paren + 80]!r}")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def expand(sql: str, values: dict[str, list[str] | str], t_from: int, t_to: int, interval_s: int = 60) -> str:
    """The SQL Grafana + grafana-clickhouse-datasource would send for the given variable values."""
    # 1. $__conditionalAll (frontend, before variables; innermost-last like the plugin's lastIndexOf loop).
    macro = "$__conditionalAll("
    while (at := sql.rfind(macro)) != -1:
        args, end = _macro_args(sql, at + len(macro) - 1)
        assert len(args) == 2, f"$__conditionalAll takes 2 arguments: {args}"
        name = re.fullmatch(r"\s*\$\{?(\w+)\}?\s*", args[1])
        assert name, f"$__conditionalAll's second argument must be a variable: {args[1]!r}"
        value = values[name.group(1)]
        is_all = value in (ALL, "", [ALL], [])
        sql = sql[:at] + ("1=1" if is_all else args[0]) + sql[end:]

    # 2. Template variables.
    def var(m: re.Match[str]) -> str:
        name, fmt = m.group(1) or m.group(3), m.group(2)
        if name.startswith("__"):
            return m.group(0)  # a backend macro, next step
        assert name in values, f"unknown variable ${name}"
        value = values[name]
        items = value if isinstance(value, list) else [value]
        assert ALL not in items, f"${name} is All outside $__conditionalAll: expand to the values instead"
        if fmt is None:
            return ",".join(items) if isinstance(value, list) else value
        assert fmt == "singlequote", f"unsupported variable format {fmt!r}"
        return ",".join(_quote(i) for i in items)

    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", var, sql)

    # 3. Backend macros (sqlds: `$__name` optionally followed by `(args)`, args up to the first `)`).
    day = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")  # noqa: E731

    def mac(m: re.Match[str]) -> str:
        name, raw = m.group(1), m.group(2)
        assert name in MACRO_ARGS, f"unsupported macro $__{name}"
        args = [a.strip() for a in raw.split(",")] if raw is not None else []
        assert len(args) == MACRO_ARGS[name], f"$__{name} takes {MACRO_ARGS[name]} argument(s), got {args}"
        if name == "timeFilter":
            return f"{args[0]} >= toDateTime({t_from}) AND {args[0]} <= toDateTime({t_to})"
        if name == "dateFilter":
            return f"{args[0]} >= toDate('{day(t_from)}') AND {args[0]} <= toDate('{day(t_to)}')"
        if name == "fromTime":
            return f"toDateTime({t_from})"
        if name == "toTime":
            return f"toDateTime({t_to})"
        return str(max(interval_s, 1))

    sql = re.sub(r"\$__(\w+)(?:\(([^()]*?)\))?", mac, sql)
    assert "$" not in sql, f"left over after expansion: {sql}"
    return sql


def test_expander_follows_the_plugin() -> None:
    vals = {"tenant": ALL, "model": ["a", "o'b"], "database": "db"}
    sql = (
        "SELECT 1 FROM ${database}.t WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), "
        "$tenant) AND $__conditionalAll(model IN (${model:singlequote}), $model) AND d >= $__fromTime "
        "AND $__dateFilter(day) GROUP BY intDiv(x, $__interval_s)"
    )
    assert expand(sql, vals, 1764115200, 1764118800, 300) == (
        "SELECT 1 FROM db.t WHERE minute >= toDateTime(1764115200) AND minute <= toDateTime(1764118800) AND 1=1 "
        "AND model IN ('a','o\\'b') AND d >= toDateTime(1764115200) AND day >= toDate('2025-11-26') "
        "AND day <= toDate('2025-11-26') GROUP BY intDiv(x, 300)"
    )
    for bad in ("$__timeInterval(minute)", "$__timeFilter_ms(minute)", "${database:csv}", "$nope", "$__unknown"):
        with pytest.raises(AssertionError):
            expand(f"SELECT {bad}", vals, 0, 1)


def test_every_query_is_collected() -> None:
    queries = dashboard_queries()
    assert DASHBOARDS, "no dashboards in dashboards/json"
    assert sum(q.kind == "panel" for q in queries) >= 15
    assert {q.source.split("variable ")[-1] for q in queries if q.kind == "variable"} >= {
        "tenant", "team", "model", "provider"}
    assert len(guide_queries()) >= 12
    # Every panel filters by every template variable it can (see the panel descriptions for the exceptions).
    for q in queries:
        if q.kind == "panel":
            for var in ("tenant", "team", "model", "provider"):
                if ("Budget" in q.source and var != "tenant") or ("by tag" in q.source and var == "team"):
                    continue
                assert f"${var})" in q.sql, f"{q.source} does not filter by ${var}"


# ------------------------------------------------------------------------------------------ the pipeline

KEYS = {  # raw key -> (key id, tenant, team)
    "tg-dash-acme-search-0123456789abcdefghijkl": ("acme-search", "acme", "search"),
    "tg-dash-acme-ads-0123456789abcdefghijklmno": ("acme-ads", "acme", "ads"),
    "tg-dash-globex-platform-0123456789abcdefgh": ("globex-platform", "globex", "platform"),
}


def _gateway_config(port: int, mock: str, topic: str, spool: Path) -> str:
    import hashlib

    keys = "".join(
        f'[keys."{kid}"]\ntenant = "{tenant}"\nteam = "{team}"\n'
        f'sha256 = "{hashlib.sha256(raw.encode()).hexdigest()}"\nmodels = ["*"]\n\n'
        for raw, (kid, tenant, team) in KEYS.items()
    )
    return f"""
[server]
listen = "127.0.0.1:{port}"

[kafka]
brokers = "{BROKERS}"
topic = "{topic}"
control_topic = "{topic}.control"
budget_requests_topic = "{topic}.budget.requests"
budget_decisions_topic = "{topic}.budget.decisions"
spool_dir = "{spool}"
message_timeout_ms = 2000

[admin]
sha256 = "{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}"

[pricing.rates]
CNY = "0.14"

[providers.mock]
kind = "openai"
base_url = "{mock}/openai/v1"
api_keys = ["sk-mock"]

[providers.dashscope]
kind = "dashscope"
base_url = "{mock}/openai/v1"
api_keys = ["sk-ds"]

[providers.zhipu]
kind = "zhipu"
base_url = "{mock}/zhipu/v1"
api_keys = ["id.secret"]

[models."gpt-4o-mini"]
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

# Priced in CNY by the shipped table (qwen-plus), converted at CNY = 0.14 USD.
[models."qwen"]
deployments = [{{ provider = "dashscope", model = "qwen-plus" }}]

# Not in the price table and no config price: zero cost, price_missing.
[models."glm"]
deployments = [{{ provider = "zhipu", model = "glm-4" }}]

# The first tier always fails with a retryable 500: the request fails over to the second (attempts = 2).
[models."flaky"]
tiers = [
  [{{ provider = "mock", model = "gpt?status=500&message=first+tier+down" }}],
  [{{ provider = "mock", model = "gpt-4o-mini" }}],
]

# Always a 500 upstream: an upstream_error event.
[models."broken"]
deployments = [{{ provider = "mock", model = "gpt?status=500&message=always+down" }}]
max_attempts = 1

{keys}"""


@dataclass
class PipelineData:
    database: str
    t_from: int
    t_to: int
    rows: int
    values: dict[str, list[str]]  # every value of each filter variable in the data


def ch(sql: str, **params: Any) -> str:
    r = httpx.post(CLICKHOUSE, content=sql.encode(), params=params, timeout=30)
    if r.status_code != 200:
        raise AssertionError(f"ClickHouse 18.16 refused the query ({r.status_code}): {r.text.strip()}\n{sql}")
    return r.text


def _traffic(base: str) -> int:
    """Sends the run's requests; returns how many (each authenticated request is one usage event)."""
    keys = list(KEYS)
    sent = 0
    with httpx.Client(base_url=base, timeout=30) as client:

        def chat(key: str, model: str, text: str, stream: bool = False, user: str | None = None,
                 tags: str | None = None, want: int = 200) -> None:
            nonlocal sent
            body: dict[str, Any] = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
            if stream:
                body["stream_options"] = {"include_usage": True}
            if user:
                body["user"] = user
            headers = {"authorization": f"Bearer {key}"}
            if tags:
                headers["x-tollgate-tags"] = tags
            r = client.post("/v1/chat/completions", json=body, headers=headers)
            sent += 1
            assert r.status_code == want, f"{model}: {r.status_code} {r.text[:300]}"
            if stream and want == 200:
                assert r.text.rstrip().endswith("data: [DONE]"), r.text[-300:]

        cached = "[mock:prompt_tokens=40&cached_tokens=16&completion_tokens=12&reasoning_tokens=5]"
        for i in range(12):
            key = keys[i % 3]
            chat(key, "gpt-4o-mini", f"hello dashboards {i} {cached if i % 2 else ''}", stream=i % 2 == 0,
                 user=["alice@example.com", "bob@example.com", None][i % 3],
                 tags=["feature=summarize,env=prod", "feature=search", None][i % 3])
        for i in range(6):
            chat(keys[i % 3], "qwen", f"qwen request number {i}", stream=i % 2 == 1, user="carol@example.com",
                 tags="feature=translate")
        for i in range(3):
            chat(keys[i], "glm", "an unpriced model", stream=i == 1)
        chat(keys[0], "flaky", "the first tier is down", tags="feature=summarize")
        # A key issued through the admin API (a control event the consumer projects into `virtual_keys`) spends
        # too, and is then revoked: the key-status guide query joins its usage to that projection.
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        r = client.post("/admin/keys", headers=admin,
                        json={"key_id": "dash-bot", "tenant": "acme", "team": "bots"})
        assert r.status_code == 201, r.text
        bot = r.json()["key"]
        for i in range(2):
            chat(bot, "gpt-4o-mini", f"an issued key's request {i}")
        r = client.delete("/admin/keys/dash-bot", headers=admin)
        assert r.status_code == 200, r.text
        chat(keys[1], "broken", "always down", want=502)
        # A malformed tag header is refused before any upstream: a metered client_error.
        r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {keys[2]}",
                                                        "x-tollgate-tags": "feature"},
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        sent += 1
        assert r.status_code == 400, r.text
    return sent


ADMIN_KEY = "tg-dash-admin-key"


def _set_budgets(base: str, database: str) -> None:
    # Budgets go through the real control plane: the admin API appends control events to the control topic,
    # and tollgate-metering projects them into `budgets`. Two versions of one budget (the panel must show the
    # latest), one per subject kind the traffic spends on, and a deleted budget that must not show. All soft,
    # so no lease owner is needed.
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    budgets = [
        ("b-acme-monthly", "tenant:acme", "monthly", "2"),
        ("b-acme-monthly", "tenant:acme", "monthly", "1"),
        ("b-search-daily", "team:search", "daily", "0.05"),
        ("b-globex-key-weekly", "key:globex-platform", "weekly", "0.1"),
        ("b-alice-total", "end_user:alice@example.com", "total", "0.01"),
        ("b-summarize-monthly", "tag:feature=summarize", "monthly", "0.02"),
        ("b-gone", "tenant:globex", "daily", "0.000000001"),
    ]
    for budget_id, subject, period, limit in budgets:
        r = httpx.put(f"{base}/admin/budgets/{budget_id}", headers=headers, timeout=10,
                      json={"subject": subject, "period": period, "limit": limit, "hard": False})
        assert r.status_code == 200, r.text
        time.sleep(0.01)  # distinct event times: the version is the event's millisecond
    r = httpx.delete(f"{base}/admin/budgets/b-gone", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    # ReplacingMergeTree may already have merged versions of one budget: wait for the last event (the delete)
    # and every budget id, not for a row count.
    deadline = time.monotonic() + 30
    while True:
        ids = int(ch(f"SELECT uniqExact(budget_id) FROM {database}.budgets").strip() or 0)
        gone = int(ch(f"SELECT count() FROM {database}.budgets WHERE budget_id = 'b-gone' AND deleted = 1").strip() or 0)
        if ids == len({b[0] for b in budgets}) and gone >= 1:
            break
        assert time.monotonic() < deadline, f"{ids} budget ids, b-gone deleted: {gone} after 30 s"
        time.sleep(0.2)


def _insert_correction(database: str) -> None:
    # One correction inserted the way `tollgate reprice` writes them (reprice itself is tested in
    # tests/tests/e2e/reprice*.rs) — a price cut of 1,000 nano-USD on one acme gpt-4o-mini request — so the
    # corrections query has data with a known delta and the spend checks prove the aggregate includes it.
    ch(f"INSERT INTO {database}.cost_corrections (correction_id, event_id, started_at, tenant, team, key_id, end_user, "
       "model, provider, currency, reporting_currency, old_price_version, new_price_version, delta_cost_nanos, "
       "delta_reporting_cost_nanos, created_at_ms) "
       "SELECT 'dash-test-correction', event_id, started_at, tenant, team, key_id, end_user, model, provider, currency, "
       "reporting_currency, price_version, 'dash-test', -1000, -1000, inserted_at_ms "
       f"FROM {database}.usage_events WHERE tenant = 'acme' AND model = 'gpt-4o-mini' AND cost_nanos > 1000 LIMIT 1")
    assert ch(f"SELECT count() FROM {database}.cost_corrections").strip() == "1"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineData]:
    try:
        ch("SELECT 1")
    except (httpx.HTTPError, AssertionError) as e:
        pytest.fail(f"ClickHouse is not answering at {CLICKHOUSE} (run `bash scripts/services.sh`): {e}")
    gateway_bin = _binary("TOLLGATE_BIN", "tollgate")
    mock_bin = _binary("TOLLGATE_MOCK_BIN", "tollgate-mock-upstream")
    metering_bin = _binary("TOLLGATE_METERING_BIN", "tollgate-metering")
    tmp = tmp_path_factory.mktemp("dashboards")
    run = uuid.uuid4().hex[:10]
    database, topic = f"tg_dash_{run}", f"tollgate.usage.test.dash_{run}"
    t_from = int(time.time()) // 60 * 60 - 3600
    procs: list[tuple[subprocess.Popen[str], int]] = []
    try:
        mock = subprocess.Popen([str(mock_bin), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        procs.append((mock, signal.SIGINT))  # the mock exits cleanly on SIGINT only
        assert mock.stdout is not None
        first = mock.stdout.readline()
        assert first.startswith("listening on "), f"mock upstream did not start: {first!r}"
        mock_url = "http://127.0.0.1:" + first.rsplit(":", 1)[1].strip()

        consumer_log = open(tmp / "consumer.log", "w")
        consumer = subprocess.Popen(
            [str(metering_bin), "--brokers", BROKERS, "--topic", topic, "--group", f"tollgate-metering-dash-{run}",
             "--dead-letter-topic", f"{topic}.dlq", "--control-topic", f"{topic}.control",
             "--clickhouse-url", CLICKHOUSE, "--database", database],
            stdout=subprocess.DEVNULL, stderr=consumer_log, env={**os.environ, "TOLLGATE_LOG": "info"}, text=True)
        procs.append((consumer, signal.SIGTERM))

        port = _free_port()
        config = tmp / "gateway.toml"
        config.write_text(_gateway_config(port, mock_url, topic, tmp / "spool"))
        gateway_log = open(tmp / "gateway.log", "w")
        gateway = subprocess.Popen([str(gateway_bin), "--config", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=gateway_log, env={**os.environ, "TOLLGATE_LOG": "info"}, text=True)
        procs.append((gateway, signal.SIGTERM))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            assert gateway.poll() is None, f"gateway exited:\n{(tmp / 'gateway.log').read_text()}"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"gateway not healthy:\n{(tmp / 'gateway.log').read_text()}"
            time.sleep(0.05)

        sent = _traffic(base)

        deadline = time.monotonic() + 45
        rows = 0
        while rows < sent:
            assert consumer.poll() is None, f"consumer exited:\n{(tmp / 'consumer.log').read_text()}"
            try:
                rows = int(ch(f"SELECT count() FROM {database}.usage_events"))
            except AssertionError:
                rows = 0  # the consumer has not created the database yet
            assert time.monotonic() < deadline, (
                f"{rows}/{sent} usage rows after 45 s\n{(tmp / 'consumer.log').read_text()[-3000:]}")
            time.sleep(0.2)
        assert rows == sent
        _set_budgets(base, database)
        _insert_correction(database)
        values = {
            var: ch(f"SELECT DISTINCT {col} FROM {database}.usage_events ORDER BY {col}").splitlines()
            for var, col in (("tenant", "tenant"), ("team", "team"), ("model", "model"), ("provider", "provider"))
        }
        yield PipelineData(database, t_from, int(time.time()) + 120, rows, values)
    finally:
        for proc, sig in reversed(procs):
            _stop(proc, sig)
        try:
            ch(f"DROP DATABASE IF EXISTS {database}")
        except (httpx.HTTPError, AssertionError):
            pass


@pytest.fixture(scope="module")
def current(pipeline: PipelineData) -> Any:
    """Current ClickHouse (chdb) with the migrations applied and the pipeline's raw rows inserted."""
    session = chdb_session.Session()
    db = pipeline.database
    session.query(f"CREATE DATABASE IF NOT EXISTS {db}")
    for f in sorted(MIGRATIONS.glob("*.sql")):
        for statement in statements(f.read_text(), db):
            apply(session, statement)
    for table in ("usage_events", "budgets", "cost_corrections", "virtual_keys"):
        rows = ch(f"SELECT * FROM {db}.{table} FORMAT JSONEachRow", output_format_json_quote_64bit_integers=0)
        session.query(f"INSERT INTO {db}.{table} FORMAT JSONEachRow {rows}")
    count = session.query(f"SELECT count() FROM {db}.usage_events", "CSV").bytes().decode().strip()
    assert int(count) == pipeline.rows
    yield session
    session.query(f"DROP DATABASE IF EXISTS {db}")
    session.close()


def run_18(sql: str) -> list[dict[str, Any]]:
    text = ch(sql + "\nFORMAT JSONEachRow", output_format_json_quote_64bit_integers=0)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_current(session: Any, sql: str) -> list[dict[str, Any]]:
    try:
        text = session.query(sql, "JSONEachRow").bytes().decode()
    except Exception as e:  # chdb raises its own error type
        raise AssertionError(f"current ClickHouse refused the query: {e}\n{sql}") from e
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _numbers(rows: list[dict[str, Any]]) -> list[float]:
    return [float(v) for r in rows for v in r.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _selection(p: PipelineData, board: Path, everything: bool) -> dict[str, Any]:
    """Variable values: All (`everything=False`) or every value ticked (the IN branch of $__conditionalAll)."""
    vals: dict[str, Any] = {}
    for name, v in variables(board).items():
        if v["type"] == "constant":
            vals[name] = p.database if name == "database" else v["query"]
        elif name == "currency":
            vals[name] = "USD"
        else:
            vals[name] = p.values[name] if everything else ALL
    return vals


QUERIES = dashboard_queries()
GUIDE_QUERIES = guide_queries()


def _board(q: Query) -> Path:
    return next(b for b in DASHBOARDS if q.source.startswith(b.name + ":"))


@pytest.mark.parametrize("q", QUERIES, ids=[q.source for q in QUERIES])
def test_dashboard_query_returns_data_on_both_engines(q: Query, pipeline: PipelineData, current: Any) -> None:
    board = _board(q)
    results = {}
    for everything in (False, True):
        sql = expand(q.sql, _selection(pipeline, board, everything), pipeline.t_from, pipeline.t_to)
        for engine, run in (("18.16", run_18), ("current", lambda s: run_current(current, s))):
            rows = run(sql)
            assert rows, f"{q.source}: no rows on ClickHouse {engine}\n{sql}"
            assert any(_numbers(rows)) or q.kind == "variable", f"{q.source}: only zeros on {engine}: {rows}"
            results[(engine, everything)] = rows
    # Ticking every value is the same as All, and both engines agree on the row count.
    assert len(results[("18.16", True)]) == len(results[("18.16", False)]), q.source
    assert len(results[("current", False)]) == len(results[("18.16", False)]), q.source
    # An hour-wide panel interval (what Grafana sends for a long range) runs on both engines too.
    sql = expand(q.sql, _selection(pipeline, board, False), pipeline.t_from, pipeline.t_to, interval_s=3600)
    assert run_18(sql) and run_current(current, sql), q.source


def test_a_narrow_selection_runs_everywhere(pipeline: PipelineData, current: Any) -> None:
    """One tenant, one team, two models: the IN branch with a subset (results may legitimately be empty)."""
    for q in QUERIES:
        vals = _selection(pipeline, _board(q), False)
        vals.update(tenant=["acme"], team=["search"], model=["gpt-4o-mini", "qwen"], provider=ALL)
        sql = expand(q.sql, vals, pipeline.t_from, pipeline.t_to)
        assert len(run_18(sql)) == len(run_current(current, sql)), q.source


def _raw_spend(database: str, p: PipelineData, where: str) -> int:
    """Spend from the raw rows plus re-pricing corrections (what cost_by_minute must add up to)."""
    window = (f"started_at >= toDateTime({p.t_from}) AND started_at <= toDateTime({p.t_to}) "
              f"AND reporting_currency = 'USD' AND {where}")
    raw = int(ch(f"SELECT sum(reporting_cost_nanos) FROM {database}.usage_events WHERE {window}"))
    corrections = int(ch(f"SELECT sum(delta_reporting_cost_nanos) FROM {database}.cost_corrections WHERE {window}"))
    return raw + corrections


@pytest.mark.parametrize("narrow", [False, True], ids=["all", "acme-gpt-4o-mini-qwen"])
def test_spend_panels_add_up_to_the_raw_rows_to_the_nano(pipeline: PipelineData, current: Any, narrow: bool) -> None:
    where = "1 = 1"
    if narrow:
        where = "tenant = 'acme' AND model IN ('gpt-4o-mini', 'qwen')"
    raw = _raw_spend(pipeline.database, pipeline, where)
    assert raw > 0
    spend_panels = [q for q in QUERIES if q.kind == "panel" and (q.source.split(": ")[1].startswith(("Cost by",
                                                                                                   "Total spend")))]
    assert len(spend_panels) == 6
    for q in spend_panels:
        vals = _selection(pipeline, _board(q), False)
        if narrow:
            vals.update(tenant=["acme"], model=["gpt-4o-mini", "qwen"])
        sql = expand(q.sql, vals, pipeline.t_from, pipeline.t_to)
        for engine, rows in (("18.16", run_18(sql)), ("current", run_current(current, sql))):
            total = sum(float(r.get("cost", r.get("spend", 0))) for r in rows)
            assert round(total * 1e9) == raw, f"{q.source} on {engine}: {total} vs {raw} nano-units"


def test_budget_panels_show_the_latest_live_budgets(pipeline: PipelineData, current: Any) -> None:
    status = next(q for q in QUERIES if "Budget status" in q.source)
    sql = expand(status.sql, _selection(pipeline, _board(status), False), pipeline.t_from, pipeline.t_to)
    for engine, rows in (("18.16", run_18(sql)), ("current", run_current(current, sql))):
        by_id = {r["budget_id"]: r for r in rows}
        assert set(by_id) == {"b-acme-monthly", "b-search-daily", "b-globex-key-weekly", "b-alice-total",
                              "b-summarize-monthly"}, engine
        assert by_id["b-acme-monthly"]["budget_limit"] == 1.0, engine  # version 2 wins
        for r in rows:
            assert r["spent"] > 0, (engine, r)
        acme = _raw_spend(pipeline.database, pipeline, "tenant = 'acme'")
        assert round(by_id["b-acme-monthly"]["spent"] * 1e9) == acme, engine


@pytest.mark.parametrize("q", GUIDE_QUERIES, ids=[q.source for q in GUIDE_QUERIES])
def test_guide_query_returns_data_on_both_engines(q: Query, pipeline: PipelineData, current: Any) -> None:
    sql = re.sub(r"\btollgate\.", f"{pipeline.database}.", q.sql.strip().rstrip(";"))
    assert "$" not in sql, f"{q.source}: Grafana syntax in a guide query"
    for engine, rows in (("18.16", run_18(sql)), ("current", run_current(current, sql))):
        assert rows, f"{q.source}: no rows on ClickHouse {engine}\n{sql}"
        assert any(_numbers(rows)), f"{q.source}: only zeros on {engine}: {rows}"


def test_compose_and_provisioning_serve_these_dashboards() -> None:
    """The wiring Grafana needs, checked without Docker: datasource uid, plugin version, mounted paths."""
    compose = (REPO / "docker-compose.yml").read_text()
    datasource = (REPO / "dashboards/provisioning/datasources/clickhouse.yaml").read_text()
    provider = (REPO / "dashboards/provisioning/dashboards/tollgate.yaml").read_text()
    plugin = re.search(r"GF_PLUGINS_PREINSTALL_SYNC: grafana-clickhouse-datasource@(\d+\.\d+\.\d+)", compose)
    assert plugin, "the ClickHouse plugin is not pinned in docker-compose.yml"
    assert re.search(r"image: grafana/grafana-oss:\d+\.\d+\.\d+\n", compose), "Grafana image not pinned"
    assert "type: grafana-clickhouse-datasource" in datasource
    uid = re.search(r"uid: (\S+)", datasource).group(1)
    mount = re.search(r"- \./dashboards/json:(\S+):ro", compose).group(1)
    assert re.search(rf"path: {re.escape(mount)}\n", provider)
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in compose
    for board in DASHBOARDS:
        text = board.read_text()
        sources: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if "datasource" in node:
                    sources.add(json.dumps(node["datasource"], sort_keys=True))
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(json.loads(text))
        assert sources == {json.dumps({"type": "grafana-clickhouse-datasource", "uid": uid}, sort_keys=True)}, sources
        versions = set(re.findall(r'"pluginVersion": "([^"]+)"', text))
        assert versions == {plugin.group(1)}, versions
