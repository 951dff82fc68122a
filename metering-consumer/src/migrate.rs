//! Applies the ClickHouse migrations at start: idempotent (every statement is `IF NOT EXISTS`, or an added column
//! skipped when it exists) and recorded
//! in `schema_migrations`, so a consumer that restarts mid-migration just finishes it.

use clickhouse::Client;
use tollgate_schemas::clickhouse::{added_column, statements, MIGRATIONS, MIGRATIONS_TABLE_DDL};

use crate::error::MeteringError;

/// Creates the database if needed and applies every migration not yet recorded. Returns the versions applied.
///
/// # Errors
/// The first statement ClickHouse refuses.
pub async fn apply(client: &Client, database: &str) -> Result<Vec<u32>, MeteringError> {
    // The client is bound to `database`, which may not exist yet: create it through a database-less client.
    client
        .clone()
        .with_database("default")
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await?;
    for statement in statements(MIGRATIONS_TABLE_DDL, database) {
        client.query(&statement).execute().await?;
    }
    let applied: Vec<u32> = client
        .query(&format!("SELECT version FROM {database}.schema_migrations"))
        .fetch_all::<u32>()
        .await?;
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for statement in m.statements(database) {
            if let Some((table, column)) = added_column(&statement) {
                let exists: u64 = client
                    .query(
                        "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
                    )
                    .bind(database)
                    .bind(table)
                    .bind(column)
                    .fetch_one()
                    .await?;
                if exists > 0 {
                    continue;
                }
            }
            client.query(&statement).execute().await.map_err(|source| {
                MeteringError::Migration {
                    version: m.version,
                    name: m.name,
                    source,
                }
            })?;
        }
        client
            .query(&format!(
                "INSERT INTO {database}.schema_migrations (version, name, applied_at) VALUES ({}, '{}', now())",
                m.version, m.name
            ))
            .execute()
            .await?;
        done.push(m.version);
    }
    Ok(done)
}
