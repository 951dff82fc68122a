"""The ClickHouse migrations (schemas/migrations/clickhouse/*.sql) run on *current* ClickHouse too.

The pipeline tests apply them to the Debian server here (18.16); this test runs the same statements through
`chdb-core` (an embedded current ClickHouse), then inserts rows and checks that both materialized views
aggregate them. Run: `.venv/bin/pytest tests/python/test_clickhouse_ddl.py -q`.
"""

from __future__ import annotations

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


def test_every_migration_runs_on_current_clickhouse_and_views_aggregate() -> None:
    files = sorted(MIGRATIONS.glob("*.sql"))
    assert [f.name[:4] for f in files] == ["0001", "0002", "0003"]
    session = chdb_session.Session()
    session.query("CREATE DATABASE IF NOT EXISTS tg_ddl")
    for f in files:
        for statement in statements(f.read_text(), "tg_ddl"):
            session.query(statement)
    # Applying twice is harmless (IF NOT EXISTS everywhere): the consumer may restart mid-migration.
    for f in files:
        for statement in statements(f.read_text(), "tg_ddl"):
            session.query(statement)

    rows = []
    for i, (tenant, model, prompt, completion, outcome) in enumerate(
        [("acme", "gpt-4o", 10, 5, "success"), ("acme", "gpt-4o", 7, 3, "success"), ("globex", "glm", 4, 0, "upstream_error")]
    ):
        rows.append(
            f"('{uuid.uuid4()}', 1, toDateTime(1764115200 + {i}), {1764115200000 + i}, {1764115200100 + i}, "
            f"'{tenant}', 'team', 'key', '', 'chat_completions', '{model}', 'p', 'openai', 'p/{model}', '{model}', 0, "
            f"'{outcome}', 200, '', 1, 100, NULL, {prompt}, {completion}, 0, 0, 0, 'provider', 0, {i}, 0)"
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
