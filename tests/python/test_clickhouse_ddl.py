"""The ClickHouse migrations (schemas/migrations/clickhouse/*.sql) run on *current* ClickHouse too.

The pipeline tests apply them to the Debian server here (18.16); this test runs the same statements through
`chdb-core` (an embedded current ClickHouse), then inserts rows and checks that both materialized views
aggregate them. Run: `.venv/bin/pytest tests/python/test_clickhouse_ddl.py -q`.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path



from chdb import session as chdb_session

MIGRATIONS = Path(__file__).resolve().parents[2] / "schemas" / "migrations" / "clickhouse"


def statements(sql: str, db: str) -> list[str]:
    """The same split as `tollgate_schemas::clickhouse::statements`."""
    text = "".join(line + "\n" for line in sql.splitlines() if not line.lstrip().startswith("--"))
    out = []
    for part in text.split(";\n"):
        part = part.strip().rstrip(";").strip().replace("{db}", db)
        if part:
            out.append(part)
    return out


ADD_COLUMN = re.compile(r"^ALTER\s+TABLE\s+(\S+)\.(\S+)\s+ADD\s+COLUMN\s+(\S+)", re.I)


def apply(session, statement: str) -> None:
    """Runs one migration statement the way the consumer does: an added column that exists is skipped."""
    m = ADD_COLUMN.match(statement)
    if m:
        db, table, column = m.groups()
        n = session.query(
            f"SELECT count() FROM system.columns WHERE database = '{db}' AND table = '{table}' AND name = '{column}'", "CSV"
        ).bytes().decode().strip()
        if n != "0":
            return
    session.query(statement)


def test_every_migration_runs_on_current_clickhouse_and_views_aggregate() -> None:
    files = sorted(MIGRATIONS.glob("*.sql"))
    assert [f.name[:4] for f in files] == [f"{i:04}" for i in range(1, len(files) + 1)]
    session = chdb_session.Session()
    session.query("CREATE DATABASE IF NOT EXISTS tg_ddl")
    for f in files:
        for statement in statements(f.read_text(), "tg_ddl"):
            apply(session, statement)
    # Applying twice is harmless (IF NOT EXISTS everywhere): the consumer may restart mid-migration.
    for f in files:
        for statement in statements(f.read_text(), "tg_ddl"):
            apply(session, statement)

    rows = []
    for i, (tenant, model, prompt, completion, outcome) in enumerate(
        [("acme", "gpt-4o", 10, 5, "success"), ("acme", "gpt-4o", 7, 3, "success"), ("globex", "glm", 4, 0, "upstream_error")]
    ):
        rows.append(
            f"('{uuid.uuid4()}', 1, toDateTime(1764115200 + {i}), {1764115200000 + i}, {1764115200100 + i}, "
            f"'{tenant}', 'team', 'key', '', 'chat_completions', '{model}', 'p', 'openai', 'p/{model}', '{model}', 0, "
            f"'{outcome}', 200, '', 1, 100, NULL, {prompt}, {completion}, 0, 0, 0, 'provider', 0, {i}, 0, "
            f"{prompt * 1000}, 'USD', {prompt * 1000}, 'USD', '2026-11-01', 0, ['feature'], ['f{i % 2}'], [])"
        )
    session.query("INSERT INTO tg_ddl.usage_events VALUES " + ", ".join(rows))
    by_minute = session.query(
        "SELECT tenant, model, sum(requests), sum(errors), sum(prompt_tokens), sum(completion_tokens) "
        "FROM tg_ddl.usage_by_minute GROUP BY tenant, model ORDER BY tenant", "CSV"
    ).bytes().decode()
    assert by_minute.splitlines() == ['"acme","gpt-4o",2,0,17,8', '"globex","glm",1,1,4,0']
    by_day = session.query(
        "SELECT day, sum(requests), sum(prompt_tokens) FROM tg_ddl.usage_by_day GROUP BY day", "CSV"
    ).bytes().decode()
    assert by_day.splitlines() == ['"2025-11-26",3,21']
    by_cost = session.query(
        "SELECT tenant, sum(requests), sum(reporting_cost_nanos) FROM tg_ddl.cost_by_minute GROUP BY tenant ORDER BY tenant",
        "CSV",
    ).bytes().decode()
    assert by_cost.splitlines() == ['"acme",2,17000', '"globex",1,4000']
    by_tag = session.query(
        "SELECT tag_value, sum(requests), sum(reporting_cost_nanos) FROM tg_ddl.cost_by_tag_day "
        "WHERE tag_key = 'feature' GROUP BY tag_value ORDER BY tag_value",
        "CSV",
    ).bytes().decode()
    assert by_tag.splitlines() == ['"f0",2,14000', '"f1",1,7000']
    # A re-pricing correction lowers the aggregate spend without adding requests.
    session.query(
        "INSERT INTO tg_ddl.cost_corrections (correction_id, event_id, started_at, tenant, model, reporting_currency, "
        f"delta_cost_nanos, delta_reporting_cost_nanos) VALUES ('c1', '{uuid.uuid4()}', toDateTime(1764115200), "
        "'acme', 'gpt-4o', 'USD', -500, -500)"
    )
    corrected = session.query(
        "SELECT sum(requests), sum(reporting_cost_nanos) FROM tg_ddl.cost_by_minute WHERE tenant = 'acme'", "CSV"
    ).bytes().decode()
    assert corrected.splitlines() == ["2,16500"]
