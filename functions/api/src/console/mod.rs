//! The web console at `/console`: server-rendered pages over the same ports, scopes and roles as
//! the API, signed in with an API token or through the deployment's OpenID Connect issuer. The
//! pages need no script; every asset is in the binary.

pub mod oidc;
mod pages;
pub mod session;
mod view;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/", get(pages::overview))
        .route("/console/login", get(pages::login_page).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/login/oidc", get(pages::oidc_start))
        .route("/console/callback", get(pages::oidc_callback))
        .route("/console/tasks", get(pages::tasks))
        .route("/console/tasks/{id}", get(pages::task))
        .route("/console/tasks/{id}/cancel", post(pages::cancel))
        .route("/console/tasks/{id}/redrive", post(pages::redrive))
        .route("/console/dead", get(pages::dead))
        .route("/console/bulk", post(pages::bulk_confirm))
        .route("/console/bulk/run", post(pages::bulk_run))
        .route("/console/imports", get(pages::imports))
        .route("/console/imports/{id}/{file}", get(pages::import_file))
        .route("/console/triggers", get(pages::triggers))
        .route("/console/triggers/{id}/delete", post(pages::delete_trigger))
        .route("/console/subscriptions", get(pages::subscriptions))
        .route(
            "/console/subscriptions/{id}/delete",
            post(pages::delete_subscription),
        )
        .route("/console/limits", get(pages::limits))
        .route("/console/schedules", get(pages::schedules))
        .route(
            "/console/schedules/{id}/{action}",
            post(pages::schedule_action),
        )
        .route("/console/assets/console.css", get(pages::stylesheet))
        .route("/console/{*rest}", get(pages::not_found))
}
