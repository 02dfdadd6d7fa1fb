//! Correlation: `X-Correlation-Id` is accepted when valid (400 otherwise) or generated, returned
//! on every response, and recorded on the request's span so every log line of the request
//! carries it. The span also carries the tenant once authenticated and the task a create made,
//! so the request's line (`request served`) says who created what.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tms::CorrelationId;
use tracing::Instrument;

use crate::problem::Problem;

pub const HEADER: &str = "x-correlation-id";
pub const PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

pub async fn correlate(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let supplied = req.headers().get(HEADER).map(|v| {
        v.to_str()
            .ok()
            .and_then(|raw| CorrelationId::parse(raw).ok())
    });
    let (id, valid) = match supplied {
        None => (CorrelationId::generate(), true),
        Some(Some(id)) => (id, true),
        Some(None) => (CorrelationId::generate(), false),
    };
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        correlation_id = %id,
        tenant = tracing::field::Empty,
        task_id = tracing::field::Empty,
    );
    async move {
        let mut response = if valid {
            req.extensions_mut().insert(id.clone());
            next.run(req).await
        } else {
            Problem::bad_request(
                "X-Correlation-Id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'",
            )
            .into_response()
        };
        if let Ok(value) = HeaderValue::from_str(id.as_str()) {
            response.headers_mut().insert(HEADER, value);
        }
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request served"
        );
        response
    }
    .instrument(span)
    .await
}
