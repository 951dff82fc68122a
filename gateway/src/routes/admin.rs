//! The admin API (admin key required): virtual keys and budgets, each change a control event
//! ([`crate::control`]), plus its OpenAPI description at `GET /admin/openapi.json`.
//!
//! - `POST /admin/keys` — issue a key (the raw key is in this answer only; it is stored as SHA-256).
//! - `GET /admin/keys` — list keys (config file and admin API), never their secrets.
//! - `POST /admin/keys/{key_id}/rotate` — a new key for the same id; the old one stops working.
//! - `DELETE /admin/keys/{key_id}` — revoke.
//! - `PUT /admin/budgets/{budget_id}`, `GET /admin/budgets`, `DELETE /admin/budgets/{budget_id}`.
//!
//! Keys and budgets declared in the config file are listed but cannot be changed here (409): the file is
//! their source of truth.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_schemas::control::{ControlChange, KeyLimits};
use tollgate_schemas::price::{format_nanos, parse_decimal_nanos};

use crate::auth::{generate_key, KeyHash};
use crate::budget::{self, BudgetSpec, Period, RecoveredSpend, Subject};
use crate::error::GatewayError;
use crate::state::AppState;

/// The OpenAPI 3 description of the admin API.
pub const OPENAPI: &str = include_str!("admin_openapi.json");

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: None,
    }
}

fn respond(result: Result<Response, GatewayError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

fn body<T: serde::de::DeserializeOwned>(raw: &Bytes) -> Result<T, GatewayError> {
    serde_json::from_slice(raw).map_err(|e| bad(format!("invalid request body: {e}")))
}

/// Names of keys and budgets: 1-64 of `[A-Za-z0-9_.-]`.
fn check_name(what: &str, name: &str) -> Result<(), GatewayError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} must be 1-64 characters of A-Z a-z 0-9 _ . -"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    key_id: String,
    tenant: String,
    team: Option<String>,
    models: Option<Vec<String>>,
    require_tags: Option<BTreeMap<String, String>>,
    limits: Option<KeyLimits>,
}

pub async fn create_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    respond(create_key_inner(&state, &headers, &raw).await)
}

async fn create_key_inner(
    state: &AppState,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<Response, GatewayError> {
    state.admin.check(headers)?;
    let req: NewKey = body(raw)?;
    check_name("key_id", &req.key_id)?;
    check_name("tenant", &req.tenant)?;
    let team = req.team.unwrap_or_else(|| "default".into());
    check_name("team", &team)?;
    if state.keys.list().iter().any(|k| k.key_id == req.key_id) {
        return Err(GatewayError::Conflict(format!(
            "a key named {:?} already exists (rotate or revoke it instead)",
            req.key_id
        )));
    }
    let models = req.models.unwrap_or_else(|| vec!["*".into()]);
    let limits = req.limits.unwrap_or_default();
    if [limits.rpm, limits.tpm, limits.max_in_flight].contains(&Some(0)) {
        return Err(bad(
            "limits must be at least 1 (leave one out for no limit)",
        ));
    }
    for m in &models {
        if m != "*" && !state.router.contains(m) {
            return Err(bad(format!("no model named {m:?}")));
        }
    }
    let (key, hash) = fresh_key(state);
    commit(
        state,
        ControlChange::KeyIssued {
            key_id: req.key_id.clone(),
            tenant: req.tenant.clone(),
            team: team.clone(),
            sha256: hash.to_hex(),
            models: models.clone(),
            require_tags: req.require_tags.unwrap_or_default(),
            limits,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(
            json!({"key_id": req.key_id, "key": key, "tenant": req.tenant, "team": team,
            "models": models}),
        ),
    )
        .into_response())
}

/// A new random key whose hash collides with no existing key.
fn fresh_key(state: &AppState) -> (String, KeyHash) {
    loop {
        let (key, hash) = generate_key();
        if !state.keys.contains_hash(&hash) {
            return (key, hash);
        }
    }
}

pub async fn list_keys(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    respond(
        state
            .admin
            .check(&headers)
            .map(|()| axum::Json(json!({"data": state.keys.list()})).into_response()),
    )
}

pub async fn rotate_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key_id): Path<String>,
) -> Response {
    respond(rotate_inner(&state, &headers, &key_id).await)
}

/// Appends `change` to the control log; returns once this replica applied it.
async fn commit(state: &AppState, change: ControlChange) -> Result<(), GatewayError> {
    commit_with(state, change, RecoveredSpend::new()).await
}

/// [`commit`], with the spend already recorded for a budget being set.
async fn commit_with(
    state: &AppState,
    change: ControlChange,
    recovered: RecoveredSpend,
) -> Result<(), GatewayError> {
    state
        .control
        .commit(
            change,
            &state.keys,
            &state.budgets,
            &state.limits,
            recovered,
        )
        .await
}

/// The issued key `key_id` (404 when there is none; 409 for a config key).
fn issued_key(state: &AppState, key_id: &str) -> Result<crate::auth::KeyInfo, GatewayError> {
    if state.keys.is_configured(key_id) {
        return Err(GatewayError::Conflict(format!(
            "key {key_id:?} is declared in the config file; change it there"
        )));
    }
    state
        .keys
        .list()
        .into_iter()
        .find(|k| k.key_id == key_id)
        .ok_or_else(|| GatewayError::NotFound(format!("no key named {key_id:?}")))
}

async fn rotate_inner(
    state: &AppState,
    headers: &HeaderMap,
    key_id: &str,
) -> Result<Response, GatewayError> {
    state.admin.check(headers)?;
    let info = issued_key(state, key_id)?;
    let principal = state
        .keys
        .principal_of(key_id)
        .ok_or_else(|| GatewayError::NotFound(format!("no key named {key_id:?}")))?;
    let (key, hash) = fresh_key(state);
    let models = match &principal.models {
        crate::config::AllowedModels::All => vec!["*".to_string()],
        crate::config::AllowedModels::Only(set) => set.iter().cloned().collect(),
    };
    commit(
        state,
        ControlChange::KeyIssued {
            key_id: key_id.to_string(),
            tenant: info.tenant.clone(),
            team: info.team.clone(),
            sha256: hash.to_hex(),
            models,
            require_tags: state.keys.own_tags_of(key_id).unwrap_or_default(),
            limits: state.keys.limits_of(key_id).unwrap_or_default(),
        },
    )
    .await?;
    Ok(axum::Json(json!({"key_id": key_id, "key": key})).into_response())
}

pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key_id): Path<String>,
) -> Response {
    respond(revoke_inner(&state, &headers, &key_id).await)
}

async fn revoke_inner(
    state: &AppState,
    headers: &HeaderMap,
    key_id: &str,
) -> Result<Response, GatewayError> {
    state.admin.check(headers)?;
    let info = issued_key(state, key_id)?;
    commit(
        state,
        ControlChange::KeyRevoked {
            key_id: key_id.to_string(),
            tenant: Some(info.tenant.clone()),
            team: Some(info.team.clone()),
        },
    )
    .await?;
    Ok(axum::Json(json!({"key_id": key_id, "revoked": true})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetBody {
    subject: String,
    period: String,
    /// Decimal amount of the reporting currency.
    limit: String,
    hard: Option<bool>,
    alert_at: Option<Vec<u8>>,
}

pub async fn put_budget(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(budget_id): Path<String>,
    raw: Bytes,
) -> Response {
    respond(put_budget_inner(&state, &headers, &budget_id, &raw).await)
}

async fn put_budget_inner(
    state: &AppState,
    headers: &HeaderMap,
    budget_id: &str,
    raw: &Bytes,
) -> Result<Response, GatewayError> {
    state.admin.check(headers)?;
    check_name("budget_id", budget_id)?;
    if state.budgets.is_configured(budget_id) {
        return Err(GatewayError::Conflict(format!(
            "budget {budget_id:?} is declared in the config file; change it there"
        )));
    }
    let req: BudgetBody = body(raw)?;
    let subject = Subject::parse(&req.subject).ok_or_else(|| {
        bad("subject must be tenant:<name>, team:<name>, key:<name>, end_user:<id>, end_user:* or tag:<key>=<value>")
    })?;
    let period = Period::parse(&req.period)
        .ok_or_else(|| bad("period must be daily, weekly, monthly or total"))?;
    let currency = state.budgets.settings().currency.clone();
    let limit = parse_decimal_nanos(&req.limit).ok_or_else(|| {
        bad(format!(
            "limit must be a decimal amount of {currency} like \"100.00\""
        ))
    })?;
    let alert_at = req.alert_at.unwrap_or_default();
    if alert_at.iter().any(|p| *p == 0 || *p > 100) {
        return Err(bad("alert_at percentages must be 1 to 100"));
    }
    if !alert_at.is_empty()
        && state.config.budgets.webhook.is_none()
        && state.config.kafka.is_none()
    {
        return Err(bad(
            "alert_at needs a webhook: set [budget_settings] webhook_url and webhook_secret_env",
        ));
    }
    let hard = req.hard.unwrap_or(true);
    let spec = BudgetSpec {
        id: budget_id.to_string(),
        subject,
        period,
        limit,
        hard,
        alert_at: alert_at.clone(),
    };
    let recovered = recover_one(state, spec.clone()).await?;
    commit_with(
        state,
        ControlChange::BudgetSet {
            budget_id: budget_id.to_string(),
            subject: req.subject.clone(),
            period: period.as_str().into(),
            limit_nanos: limit,
            currency: currency.clone(),
            hard,
            alert_at: alert_at.clone(),
        },
        recovered,
    )
    .await?;
    Ok(axum::Json(budget_json(state, &spec, "admin")).into_response())
}

/// Spend already recorded for a new budget in its current period (embedded store; with Kafka the gateway has
/// no local history and a new budget starts from zero on this replica).
async fn recover_one(state: &AppState, spec: BudgetSpec) -> Result<RecoveredSpend, GatewayError> {
    if state.config.kafka.is_some() {
        return Ok(RecoveredSpend::new());
    }
    let path = state.config.store.path.clone();
    let tz = state.budgets.settings().timezone;
    tokio::task::spawn_blocking(move || {
        let conn = crate::events::embedded::open(&path)?;
        let since = budget::earliest_window_start(std::slice::from_ref(&spec), tz);
        let rows = crate::events::embedded::spend_since(&conn, since)
            .map_err(|e| GatewayError::Internal(format!("cannot read spend: {e}")))?;
        Ok(budget::recover(std::slice::from_ref(&spec), tz, &rows))
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("spend recovery failed: {e}")))?
}

fn budget_json(state: &AppState, spec: &BudgetSpec, source: &str) -> Value {
    let currency = &state.budgets.settings().currency;
    let books: Vec<Value> = state
        .budgets
        .snapshot()
        .into_iter()
        .filter(|(id, ..)| *id == spec.id)
        .map(|(_, subject, spent, reserved, (start, end))| {
            json!({"subject": subject, "spent": format_nanos(i128::from(spent)),
                "reserved": format_nanos(i128::from(reserved)), "spent_nanos": spent,
                "reserved_nanos": reserved, "window_start_ms": start,
                "window_end_ms": (end != i64::MAX).then_some(end)})
        })
        .collect();
    json!({"budget_id": spec.id, "subject": spec.subject.to_string(), "period": spec.period.as_str(),
        "limit": format_nanos(i128::from(spec.limit)), "limit_nanos": spec.limit, "currency": currency,
        "hard": spec.hard, "alert_at": spec.alert_at, "source": source, "books": books})
}

pub async fn list_budgets(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    respond(state.admin.check(&headers).map(|()| {
        let data: Vec<Value> = state
            .budgets
            .specs()
            .iter()
            .map(|s| {
                let source = if state.budgets.is_configured(&s.id) {
                    "config"
                } else {
                    "admin"
                };
                budget_json(&state, s, source)
            })
            .collect();
        axum::Json(json!({"data": data})).into_response()
    }))
}

pub async fn delete_budget(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(budget_id): Path<String>,
) -> Response {
    respond(delete_budget_inner(&state, &headers, &budget_id).await)
}

async fn delete_budget_inner(
    state: &AppState,
    headers: &HeaderMap,
    budget_id: &str,
) -> Result<Response, GatewayError> {
    state.admin.check(headers)?;
    if state.budgets.is_configured(budget_id) {
        return Err(GatewayError::Conflict(format!(
            "budget {budget_id:?} is declared in the config file; change it there"
        )));
    }
    if !state.budgets.specs().iter().any(|s| s.id == budget_id) {
        return Err(GatewayError::NotFound(format!(
            "no budget named {budget_id:?}"
        )));
    }
    commit(
        state,
        ControlChange::BudgetDeleted {
            budget_id: budget_id.to_string(),
        },
    )
    .await?;
    Ok(axum::Json(json!({"budget_id": budget_id, "deleted": true})).into_response())
}

/// The OpenAPI description; public like the page (it holds no data), but only while the admin API is on.
pub async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    if state.config.admin.is_none() {
        return GatewayError::AdminDisabled.into_response();
    }
    ([(http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
