//! HTTP routes: one file per endpoint, each a thin handler over [`crate::proxy`] or the state.

mod admin;
mod admin_usage;
mod chat;
mod embeddings;
mod generate_content;
mod health;
mod messages;
mod metrics;
mod models;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::state::AppState;

/// The gateway's router.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/messages", post(messages::messages))
        .route(
            "/v1beta/models/{target}",
            post(generate_content::generate_content),
        )
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*model}", get(models::retrieve))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/admin/keys", post(admin::create_key).get(admin::list_keys))
        .route("/admin/keys/{key_id}/rotate", post(admin::rotate_key))
        .route(
            "/admin/keys/{key_id}",
            axum::routing::delete(admin::revoke_key),
        )
        .route("/admin/budgets", get(admin::list_budgets))
        .route(
            "/admin/budgets/{budget_id}",
            axum::routing::put(admin::put_budget).delete(admin::delete_budget),
        )
        .route("/admin/openapi.json", get(admin::openapi))
        .route("/admin/usage", get(admin_usage::usage))
        .route("/admin/usage/page", get(admin_usage::page))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> impl IntoResponse {
    let message = format!("unknown route {method} {}", uri.path());
    (
        http::StatusCode::NOT_FOUND,
        axum::Json(
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "unknown_route"}}),
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    let message = format!("method {method} is not allowed on {}", uri.path());
    (
        http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "method_not_allowed"}}),
        ),
    )
}
