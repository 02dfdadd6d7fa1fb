//! Health, the OpenAPI document and its docs page.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use crate::model::Health;
use crate::problem::Problem;
use crate::AppState;

/// 200 when the database answers, 503 otherwise. No authentication.
#[utoipa::path(
    get, path = "/health", tag = "system",
    responses(
        (status = 200, description = "The database answers.", body = Health),
        (status = 503, description = "The database does not answer.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(3), state.repo.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
            }),
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            Problem::unavailable("the database does not answer").into_response()
        }
        Err(_) => Problem::unavailable("the database did not answer within 3 s").into_response(),
    }
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json", body = serde_json::Value))
)]
pub async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.pages().openapi.clone(),
    )
        .into_response()
}

/// The interactive API reference (Swagger UI), its assets served from the binary.
#[utoipa::path(
    get, path = "/docs", tag = "system",
    responses((status = 200, description = "The documentation page.", content_type = "text/html", body = String))
)]
pub async fn docs(State(state): State<AppState>) -> Html<String> {
    Html(state.pages().docs.clone())
}
