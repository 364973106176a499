//! `/debug/failpoints`, served only by builds with the store's failpoints (test builds,
//! `--features berth-store/failpoints`): the Jepsen harness turns the store's
//! fault-injection points (`berth_store::failpoints`) on and off at run time, as TiKV's
//! failpoint HTTP API does.
//!
//! * `GET /debug/failpoints`: every known point with its actions (`off` when unset), one
//!   `name=actions` per line;
//! * `PUT /debug/failpoints/{name}` with the `fail` crate's actions as the body
//!   (`sleep(800)`, `20%return`, …; `return` crashes the server at that point);
//! * `DELETE /debug/failpoints/{name}`.
//!
//! A build without the feature has no such routes (404), which is how the harness tells.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_store::failpoints;

/// The routes, to merge into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/debug/failpoints", get(list))
        .route("/debug/failpoints/{name}", axum::routing::put(set).delete(remove))
}

async fn list() -> Response {
    let configured = failpoints::list();
    let mut text = String::new();
    for name in failpoints::ALL {
        let actions = configured.iter().find(|(n, _)| n == name).map(|(_, a)| a.as_str()).unwrap_or("off");
        text.push_str(&format!("{name}={actions}\n"));
    }
    text.into_response()
}

async fn set(Path(name): Path<String>, body: String) -> Response {
    match failpoints::configure(&name, body.trim()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn remove(Path(name): Path<String>) -> Response {
    if !failpoints::ALL.contains(&name.as_str()) {
        return (StatusCode::NOT_FOUND, format!("unknown failpoint {name:?}")).into_response();
    }
    failpoints::remove(&name);
    StatusCode::NO_CONTENT.into_response()
}
