//! The quickstart: an Axum API protected by API keys, with demo keys printed at start-up.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Routes: `GET /healthz` (no key), `GET /api/ping`, `GET /api/resources` (the records of the
//! key's organization, and of its user for user-scoped keys), `GET /api/me` (the key's scope
//! and claims, never its `token_id`), `GET /api/my/tasks` (user-scoped keys only: 403 for
//! organization keys), and key management under `/keys` (sign in at `/demo/sign-in`). With
//! `METRICS_PORT` set, Prometheus metrics on `127.0.0.1:$METRICS_PORT/metrics` (feature
//! `metrics`; see `metrics.rs`).
//!
//! Everything about the environment (Scalekit instead of the embedded store, the cache, Redis,
//! rate limits) lives in `setup.rs`; this file is the app itself.

mod metrics;
mod setup;

use std::collections::BTreeMap;

use axum::{Json, Router, routing::get};
use axum_api_key::{ApiKeyLayer, OrgScope, TokenInfo, UserScope};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Serialize)]
struct Resource {
    id: &'static str,
    organization_id: &'static str,
    user_id: Option<&'static str>,
    name: &'static str,
}

const fn resource(
    id: &'static str,
    org: &'static str,
    user: Option<&'static str>,
    name: &'static str,
) -> Resource {
    Resource {
        id,
        organization_id: org,
        user_id: user,
        name,
    }
}

/// Two organizations; one record per user of `org_demo`.
const RESOURCES: &[Resource] = &[
    resource("res_1", "org_demo", None, "Shared runbook"),
    resource("res_2", "org_demo", Some("usr_demo"), "Demo user's notes"),
    resource(
        "res_3",
        "org_demo",
        Some("usr_other"),
        "Another user's notes",
    ),
    resource("res_4", "org_other", None, "Someone else's data"),
];

/// Any valid key: filter by its organization, and by its user for user-scoped keys.
async fn resources(
    OrgScope {
        organization_id,
        user_id,
        ..
    }: OrgScope,
) -> Json<Value> {
    let visible: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.organization_id == organization_id)
        .filter(|r| user_id.is_none() || r.user_id.is_none() || r.user_id == user_id.as_deref())
        .collect();
    Json(json!({ "organization_id": organization_id, "user_id": user_id, "resources": visible }))
}

/// What `/api/me` answers: the key's scope and claims. Not `TokenInfo` itself: its `token_id`
/// is not for clients (Scalekit's validate call accepts a token id in place of the key).
#[derive(Serialize)]
struct Me {
    organization_id: String,
    user_id: Option<String>,
    custom_claims: BTreeMap<String, String>,
}

/// The caller's scope and claims (never the key, nor its id).
async fn me(info: TokenInfo) -> Json<Me> {
    Json(Me {
        organization_id: info.organization_id().to_owned(),
        user_id: info.user_id().map(str::to_owned),
        custom_claims: info.claims_map(),
    })
}

/// User-scoped keys only.
async fn my_tasks(
    UserScope {
        organization_id,
        user_id,
        ..
    }: UserScope,
) -> Json<Value> {
    let tasks = json!([{ "id": "task_1", "title": format!("Say hello to {user_id}") }]);
    Json(json!({ "organization_id": organization_id, "user_id": user_id, "tasks": tasks }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    metrics::serve_from_env().await?; // METRICS_PORT: Prometheus text on 127.0.0.1 only
    let setup = setup::from_env().await?;
    let mut auth = ApiKeyLayer::new(setup.validator())
        .realm("quickstart")
        .failed_key_throttle(setup::failed_key_throttle()?); // on by default; shared over REDIS_URL
    if let Some(limit) = setup.rate_limit() {
        auth = auth.rate_limit(limit); // per-key limits when RATE_LIMIT is set
    }
    let api = Router::new()
        .route("/api/resources", get(resources))
        .route("/api/me", get(me))
        .route("/api/ping", get(|_: OrgScope| async { "ok" })) // auth cost, for load tests
        .route("/api/my/tasks", get(my_tasks))
        .layer(auth);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest("/keys", setup.key_management()) // your customers' keys page and API
        .merge(setup.demo_sign_in())
        .merge(api);
    setup.serve(app).await
}
