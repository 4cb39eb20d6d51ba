//! The key-management router over real HTTP, on both stores: the embedded one and the fake
//! Scalekit through `ScalekitClient`. Every route, every scope rule, bad input, rotation with
//! grace (through a cached validator too), CSRF, escaping, audit events and logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::{CreateToken, KeyStore};
use axum_api_key::manage::{
    ApiKeyManagers, AuditAction, AuditEvent, AuditListener, KeyManagement, ManagerSource, Session,
    SessionManagers,
};
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use axum_api_key::{ApiKeyLayer, InMemoryTokens, TokenInfo, Validator};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const SECRET: &[u8] = b"test secret, thirty-two bytes or more";

#[derive(Clone, Default)]
struct Audits(Arc<Mutex<Vec<AuditEvent>>>);

impl AuditListener for Audits {
    fn on_audit(&self, event: &AuditEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// One running app: `/keys` (the router) and `/protected` (any valid key), on one store.
struct Env {
    base: String,
    http: Client,
    /// The keys the test seeds directly (the fake's own store in Scalekit mode).
    seed: InMemoryTokens,
    audits: Audits,
    sessions: SessionManagers,
    _fake: Option<FakeScalekit>,
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Scalekit,
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Key-management options a test sets beyond the defaults.
#[derive(Clone, Copy, Default)]
struct Options {
    max_keys_per_user: Option<u32>,
    max_lifetime: Option<Option<Duration>>,
}

impl Options {
    fn apply<S: KeyStore, M: ManagerSource>(
        self,
        mut keys: KeyManagement<S, M>,
    ) -> KeyManagement<S, M> {
        if let Some(max) = self.max_keys_per_user {
            keys = keys.max_keys_per_user(max);
        }
        if let Some(lifetime) = self.max_lifetime {
            keys = keys.max_lifetime(lifetime);
        }
        keys
    }
}

fn app<S>(store: S, audits: Audits, sessions: SessionManagers, options: Options) -> Router
where
    S: KeyStore + Validator + Clone,
{
    let managers = (
        sessions,
        ApiKeyManagers::new(ApiKeyLayer::new(store.clone()).realm("keys")),
    );
    let keys = KeyManagement::new(store.clone(), managers)
        .allowed_claims(["environment"])
        .audit(audits);
    let keys = options.apply(keys).router();
    let protected = Router::new()
        .route(
            "/protected",
            get(|info: TokenInfo| async move { info.token_id().to_owned() }),
        )
        .layer(ApiKeyLayer::new(store));
    Router::new().nest("/keys", keys).merge(protected)
}

async fn env(backend: Backend) -> Env {
    env_with(backend, false).await
}

/// `cached`: the router and the layer share a `CachedValidator` (60 s TTL) over the store.
async fn env_with(backend: Backend, cached: bool) -> Env {
    env_full(backend, cached, Options::default()).await
}

async fn env_full(backend: Backend, cached: bool, options: Options) -> Env {
    let audits = Audits::default();
    let sessions = SessionManagers::new(SECRET).unwrap().secure(false);
    let ttl = Duration::from_secs(60);
    let (base, seed, fake) = match backend {
        Backend::Memory => {
            let tokens = InMemoryTokens::new();
            let router = if cached {
                app(
                    CachedValidator::builder(tokens.clone()).ttl(ttl).build(),
                    audits.clone(),
                    sessions.clone(),
                    options,
                )
            } else {
                app(tokens.clone(), audits.clone(), sessions.clone(), options)
            };
            (serve(router).await, tokens, None)
        }
        Backend::Scalekit => {
            let fake = FakeScalekit::start().await;
            let client = fake.client();
            let router = if cached {
                app(
                    CachedValidator::builder(client).ttl(ttl).build(),
                    audits.clone(),
                    sessions.clone(),
                    options,
                )
            } else {
                app(client, audits.clone(), sessions.clone(), options)
            };
            (serve(router).await, fake.tokens().clone(), Some(fake))
        }
    };
    Env {
        base,
        http: Client::new(),
        seed,
        audits,
        sessions,
        _fake: fake,
    }
}

impl Env {
    /// Seeds a key directly in the store; returns (key, token id).
    fn seed(&self, request: CreateToken) -> (String, String) {
        let created = self.seed.create(request).unwrap();
        (created.key.expose_secret().to_owned(), created.token_id)
    }
    fn admin(&self, org: &str) -> String {
        self.seed(CreateToken::new(org).claim("role", "key_admin"))
            .0
    }
    fn user(&self, org: &str, user: &str) -> (String, String) {
        self.seed(CreateToken::new(org).user(user))
    }
    async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
    async fn raw(&self, method: &str, path: &str, key: &str, body: &str) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }
    async fn protected(&self, key: &str) -> StatusCode {
        self.http
            .get(format!("{}/protected", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
    }
    async fn list(&self, key: &str, query: &str) -> Value {
        let response = self
            .call("GET", &format!("/keys/api{query}"), key, None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
    fn cookie(&self, session: Session) -> String {
        let set = self.sessions.sign_in(session);
        set.to_str().unwrap().split(';').next().unwrap().to_owned()
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["token_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn error_of(response: Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(body["error_description"].is_string(), "{body}");
    (status, body["error"].as_str().unwrap().to_owned())
}

// ---------------------------------------------------------------------------------------------
// The admin's whole lifecycle.

async fn admin_lifecycle(backend: Backend) {
    let env = env(backend).await;
    let admin = env.admin("org_acme");

    let response = env
        .call(
            "POST",
            "/keys/api",
            &admin,
            Some(json!({"description": "deploy bot", "custom_claims": {"environment": "prod"}})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let created: Value = response.json().await.unwrap();
    let key = created["token"].as_str().unwrap().to_owned();
    let id = created["token_id"].as_str().unwrap().to_owned();
    assert_eq!(created["organization_id"], "org_acme");
    assert_eq!(created["user_id"], Value::Null);
    assert_eq!(created["description"], "deploy bot");
    assert_eq!(created["custom_claims"]["environment"], "prod");
    assert!(key.ends_with(created["token_suffix"].as_str().unwrap()));
    // No expiry asked: the policy's cap (365 days) applies.
    let expiry = OffsetDateTime::parse(created["expiry"].as_str().unwrap(), &Rfc3339).unwrap();
    let days = (expiry - OffsetDateTime::now_utc()).whole_days();
    assert!((364..=365).contains(&days), "{days}");
    assert!(created["created_at"].is_string());

    // Works at once.
    assert_eq!(env.protected(&key).await, StatusCode::OK);

    // Listed (newest first: after the admin's own key), never with the secret.
    let response = env.call("GET", "/keys/api", &admin, None).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    assert!(!text.contains(&key), "a listing shows a plain key");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ids(&list)[0], id);
    assert_eq!(list["next_page_token"], Value::Null);
    assert!(list["keys"][0].get("token").is_none());

    // Get.
    let response = env
        .call("GET", &format!("/keys/api/{id}"), &admin, None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&key));
    let got: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got["description"], "deploy bot");

    // Rotate without grace: the successor works, the old key stops at once.
    let response = env
        .call("POST", &format!("/keys/api/{id}/rotate"), &admin, None)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let rotated: Value = response.json().await.unwrap();
    let new_key = rotated["token"].as_str().unwrap().to_owned();
    let new_id = rotated["token_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(rotated["rotated_token_id"], id.as_str());
    assert_eq!(rotated["description"], "deploy bot");
    assert_eq!(rotated["custom_claims"]["environment"], "prod");
    assert_eq!(env.protected(&new_key).await, StatusCode::OK);
    assert_eq!(env.protected(&key).await, StatusCode::UNAUTHORIZED);
    let response = env
        .call("GET", &format!("/keys/api/{id}"), &admin, None)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Revoke: 204, again 204, and the key stops at once.
    let response = env
        .call("DELETE", &format!("/keys/api/{new_id}"), &admin, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(env.protected(&new_key).await, StatusCode::UNAUTHORIZED);
    let response = env
        .call("DELETE", &format!("/keys/api/{new_id}"), &admin, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(!ids(&env.list(&admin, "").await).contains(&new_id));

    // Audited with the actor, never the key.
    let events = env.audits.0.lock().unwrap().clone();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["created", "created", "rotated", "revoked"]);
    assert!(events.iter().all(|e| e.actor.starts_with("key:apit_")));
    assert!(
        matches!(&events[2].action, AuditAction::Rotated { successor, grace_until: None } if *successor == new_id)
    );
    assert!(!format!("{events:?}").contains(&key));
}

#[tokio::test]
async fn admin_lifecycle_on_the_embedded_store() {
    admin_lifecycle(Backend::Memory).await;
}

#[tokio::test]
async fn admin_lifecycle_on_scalekit() {
    admin_lifecycle(Backend::Scalekit).await;
}

// ---------------------------------------------------------------------------------------------
// Scope rules.

async fn scope_rules(backend: Backend) {
    let env = env(backend).await;
    let admin = env.admin("org_acme");
    let other_admin = env.admin("org_other");
    let (_, org_key_id) = env.seed(CreateToken::new("org_acme").description("org key"));
    let (alice, alice_id) = env.user("org_acme", "usr_alice");
    let (_, bob_id) = env.user("org_acme", "usr_bob");
    let (plain_org_key, _) = env.seed(CreateToken::new("org_acme"));

    // Another organization's admin: 404 for every route on our keys, nothing in its list.
    for (method, path) in [
        ("GET", format!("/keys/api/{alice_id}")),
        ("POST", format!("/keys/api/{alice_id}/rotate")),
        ("DELETE", format!("/keys/api/{alice_id}")),
    ] {
        let response = env.call(method, &path, &other_admin, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    let unknown = "apit_00000000000000001";
    let response = env
        .call(
            "DELETE",
            &format!("/keys/api/{unknown}"),
            &other_admin,
            None,
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "unknown and foreign look alike"
    );
    assert_eq!(ids(&env.list(&other_admin, "").await).len(), 1);
    assert_eq!(
        env.seed.get_by_id(&alice_id).unwrap().user_id(),
        Some("usr_alice")
    );

    // The organization admin sees all five keys, and can filter by user.
    assert_eq!(ids(&env.list(&admin, "").await).len(), 5);
    assert_eq!(
        ids(&env.list(&admin, "?user_id=usr_bob").await),
        std::slice::from_ref(&bob_id)
    );

    // A user key: its own keys only.
    assert_eq!(
        ids(&env.list(&alice, "").await),
        std::slice::from_ref(&alice_id)
    );
    assert_eq!(
        ids(&env.list(&alice, "?user_id=usr_bob").await),
        std::slice::from_ref(&alice_id)
    );
    for path in [
        format!("/keys/api/{bob_id}"),
        format!("/keys/api/{org_key_id}"),
    ] {
        let response = env.call("GET", &path, &alice, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = env.call("DELETE", &path, &alice, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    // It creates user-scoped keys for itself, nothing more.
    let response = env
        .call(
            "POST",
            "/keys/api",
            &alice,
            Some(json!({"description": "laptop"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["user_id"], "usr_alice");
    let response = env
        .call(
            "POST",
            "/keys/api",
            &alice,
            Some(json!({"user_id": "usr_bob"})),
        )
        .await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::FORBIDDEN, "insufficient_scope".into())
    );
    let response = env
        .call(
            "POST",
            "/keys/api",
            &alice,
            Some(json!({"custom_claims": {"role": "key_admin"}})),
        )
        .await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::FORBIDDEN, "insufficient_scope".into())
    );

    // A plain organization key (no grant, no user): 403 everywhere.
    for (method, path) in [
        ("GET", "/keys/api".to_owned()),
        ("POST", "/keys/api".to_owned()),
        ("GET", format!("/keys/api/{alice_id}")),
        ("DELETE", format!("/keys/api/{alice_id}")),
    ] {
        let response = env.call(method, &path, &plain_org_key, None).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }

    // The admin creates user keys and admin keys; the admin key it mints administers.
    let response = env
        .call(
            "POST",
            "/keys/api",
            &admin,
            Some(json!({"user_id": "usr_carol", "custom_claims": {"role": "key_admin"}})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let carol: Value = response.json().await.unwrap();
    let carol_key = carol["token"].as_str().unwrap();
    assert!(ids(&env.list(carol_key, "").await).contains(&bob_id));

    // No key, a bad key: 401 with a challenge.
    let response = env
        .http
        .get(format!("{}/keys/api", env.base))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(error_of(response).await.0, StatusCode::UNAUTHORIZED);
    let response = env
        .call("GET", "/keys/api", &format!("{}x", &alice[1..]), None)
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn scope_rules_on_the_embedded_store() {
    scope_rules(Backend::Memory).await;
}

#[tokio::test]
async fn scope_rules_on_scalekit() {
    scope_rules(Backend::Scalekit).await;
}

// ---------------------------------------------------------------------------------------------
// Bad input: clear 400/422, nothing created.

async fn bad_input(backend: Backend) {
    let env = env(backend).await;
    let admin = env.admin("org_acme");
    let past = (OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&Rfc3339)
        .unwrap();
    let far = (OffsetDateTime::now_utc() + time::Duration::days(400))
        .format(&Rfc3339)
        .unwrap();
    let cases = [
        (
            json!({"description": "x".repeat(256)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"custom_claims": {"environment": "x".repeat(257)}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"custom_claims": {"unlisted": "x"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"custom_claims": {"revoke_after": "9999999999"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"expiry": past}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"expiry": far}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"expiry": "tomorrow"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"descripton": "typo"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"description": 5}), StatusCode::UNPROCESSABLE_ENTITY),
        // User ids become rate-limit keys, Redis keys and log fields: short and plain.
        (
            json!({"user_id": "usr_1\nINFO forged"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"user_id": "u".repeat(2000)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (body, status) in cases {
        let response = env
            .call("POST", "/keys/api", &admin, Some(body.clone()))
            .await;
        assert_eq!(
            error_of(response).await,
            (status, "invalid_request".into()),
            "{body}"
        );
    }
    let response = env.raw("POST", "/keys/api", &admin, "{not json").await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let response = env
        .call("GET", "/keys/api?page_token=%21%21", &admin, None)
        .await;
    assert_eq!(error_of(response).await.0, StatusCode::BAD_REQUEST);
    let response = env
        .call("GET", "/keys/api?page_size=1000", &admin, None)
        .await;
    assert_eq!(error_of(response).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let response = env.call("GET", "/keys/api?color=red", &admin, None).await;
    assert_eq!(error_of(response).await.0, StatusCode::BAD_REQUEST);

    // Rotation: grace over the cap, unknown fields.
    let (_, id) = env.seed(CreateToken::new("org_acme"));
    let path = format!("/keys/api/{id}/rotate");
    let response = env
        .call(
            "POST",
            &path,
            &admin,
            Some(json!({"grace_seconds": 8 * 86_400})),
        )
        .await;
    assert_eq!(error_of(response).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let response = env
        .call("POST", &path, &admin, Some(json!({"grace": 60})))
        .await;
    assert_eq!(error_of(response).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    // A path that cannot be an id: 404.
    let response = env
        .call("GET", "/keys/api/%3Cscript%3E", &admin, None)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Nothing half-created: the admin key and the seeded one only.
    assert_eq!(ids(&env.list(&admin, "").await).len(), 2);
}

#[tokio::test]
async fn bad_input_on_the_embedded_store() {
    bad_input(Backend::Memory).await;
}

#[tokio::test]
async fn bad_input_on_scalekit() {
    bad_input(Backend::Scalekit).await;
}

#[tokio::test]
async fn a_failed_rotation_leaves_nothing_behind() {
    let env = env(Backend::Scalekit).await;
    let admin = env.admin("org_acme");
    let (old, id) = env.seed(CreateToken::new("org_acme"));
    let fake = env._fake.as_ref().unwrap();
    fake.fail_next(Op::Update, Fault::html(503));
    let response = env
        .call(
            "POST",
            &format!("/keys/api/{id}/rotate"),
            &admin,
            Some(json!({"grace_seconds": 60})),
        )
        .await;
    assert_eq!(error_of(response).await.0, StatusCode::SERVICE_UNAVAILABLE);
    // The old key works and carries no deadline; the successor was revoked again.
    assert_eq!(env.protected(&old).await, StatusCode::OK);
    assert!(env.seed.get_by_id(&id).unwrap().revoke_after().is_none());
    assert_eq!(ids(&env.list(&admin, "").await).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Listing: newest first, paged.

async fn paging(backend: Backend) {
    let env = env(backend).await;
    let admin = env.admin("org_acme");
    let mut created = Vec::new();
    for i in 0..5 {
        let response = env
            .call(
                "POST",
                "/keys/api",
                &admin,
                Some(json!({"description": format!("k{i}")})),
            )
            .await;
        let body: Value = response.json().await.unwrap();
        created.push(body["token_id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await; // distinct creation times
    }
    let mut seen = Vec::new();
    let mut query = "?page_size=2".to_owned();
    loop {
        let page = env.list(&admin, &query).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2);
        seen.extend(page_ids);
        match page["next_page_token"].as_str() {
            Some(next) => query = format!("?page_size=2&page_token={next}"),
            None => break,
        }
    }
    // Six keys (five and the admin's), newest first, each once.
    assert_eq!(seen.len(), 6);
    created.reverse();
    assert_eq!(&seen[..5], &created[..]);
}

#[tokio::test]
async fn lists_newest_first_on_the_embedded_store() {
    paging(Backend::Memory).await;
}

#[tokio::test]
async fn lists_newest_first_on_scalekit() {
    paging(Backend::Scalekit).await;
}

// ---------------------------------------------------------------------------------------------
// Rotation with grace: the deadline lives in the key's claims and holds through a cache.

async fn grace(backend: Backend, cached: bool) {
    let env = env_with(backend, cached).await;
    let admin = env.admin("org_acme");
    let (old, id) = env.seed(CreateToken::new("org_acme").claim("environment", "prod"));
    // Warm the cache with the old key's facts (no deadline yet).
    assert_eq!(env.protected(&old).await, StatusCode::OK);

    let response = env
        .call(
            "POST",
            &format!("/keys/api/{id}/rotate"),
            &admin,
            // Four seconds: whole-second deadlines leave at least three for the checks below.
            Some(json!({"grace_seconds": 4})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rotated: Value = response.json().await.unwrap();
    assert!(rotated["rotated_token_revoke_after"].is_string());
    assert_eq!(rotated["custom_claims"], json!({"environment": "prod"}));
    let new_key = rotated["token"].as_str().unwrap().to_owned();

    // Both work during the grace; the deadline is in the old key's own claims.
    assert_eq!(env.protected(&old).await, StatusCode::OK);
    assert_eq!(env.protected(&new_key).await, StatusCode::OK);
    let stored = env.seed.get_by_id(&id).unwrap();
    assert!(stored.revoke_after().is_some());

    tokio::time::sleep(Duration::from_millis(5100)).await;
    assert_eq!(env.protected(&old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(env.protected(&new_key).await, StatusCode::OK);
    // Gone from the listing too.
    assert!(!ids(&env.list(&admin, "").await).contains(&id));
}

#[tokio::test]
async fn grace_on_the_embedded_store() {
    grace(Backend::Memory, false).await;
}

#[tokio::test]
async fn grace_on_scalekit() {
    grace(Backend::Scalekit, false).await;
}

#[tokio::test]
async fn grace_through_a_cached_validator() {
    grace(Backend::Memory, true).await;
}

#[tokio::test]
async fn grace_through_a_cached_scalekit_client() {
    grace(Backend::Scalekit, true).await;
}

#[tokio::test]
async fn a_restarted_app_still_honours_the_grace() {
    // The deadline is in the store: a second app (a restart, another instance) over the same
    // Scalekit refuses the key after it without having seen the rotation.
    let fake = FakeScalekit::start().await;
    // Whole seconds, three ahead: the first request must land before the deadline even on a
    // loaded machine (`+ 1` could leave a millisecond when `now` is at x.999 s).
    let deadline = OffsetDateTime::now_utc().unix_timestamp() + 3;
    let created = fake
        .tokens()
        .create(CreateToken::new("org_acme").claim("revoke_after", deadline.to_string()))
        .unwrap();
    let key = created.key.expose_secret().to_owned();
    let other = Router::new()
        .route("/protected", get(|| async { "ok" }))
        .layer(ApiKeyLayer::new(fake.client()));
    let base = serve(other).await;
    let status = |base: String, key: String| async move {
        Client::new()
            .get(format!("{base}/protected"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(status(base.clone(), key.clone()).await, StatusCode::OK);
    // Until just past the deadline.
    let left = deadline - OffsetDateTime::now_utc().unix_timestamp() + 1;
    tokio::time::sleep(Duration::from_millis(100 + 1000 * left.max(0) as u64)).await;
    assert_eq!(status(base, key).await, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// The page: sessions, CSRF, escaping, headers.

#[tokio::test]
async fn the_page_needs_a_session_and_escapes_everything() {
    let env = env(Backend::Memory).await;
    let admin = env.admin("org_acme");
    let evil = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
    let response = env
        .call(
            "POST",
            "/keys/api",
            &admin,
            Some(json!({"description": evil, "custom_claims": {"environment": evil}})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let response = env
        .http
        .get(format!("{}/keys", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.text().await.unwrap().contains("not signed in"));

    let cookie = env.cookie(Session::admin("org_acme", "admin@acme.test"));
    for path in ["/keys", "/keys?page_token="] {
        let response = env
            .http
            .get(format!("{}{path}", env.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-frame-options"], "DENY");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'nonce-"));
        assert!(!csp.contains("unsafe-inline"));
        let html = response.text().await.unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The key's claims are listed, escaped too.
        assert!(html.contains("environment=&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("form method=\"post\" action=\"/keys/create\""));
    }
}

/// The CSRF token of the page the cookie opens.
async fn csrf_token(env: &Env, cookie: &str) -> String {
    let html = env
        .http
        .get(format!("{}/keys", env.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn cookie_requests_pass_the_csrf_checks() {
    let env = env(Backend::Memory).await;
    let cookie = env.cookie(Session::admin("org_acme", "admin@acme.test"));
    let token = csrf_token(&env, &cookie).await;
    let post = |form: Vec<(&'static str, String)>, headers: Vec<(&'static str, &'static str)>| {
        let mut request = env
            .http
            .post(format!("{}/keys/create", env.base))
            .header("cookie", &cookie)
            .form(&form);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };

    // No token; a wrong token; a cross-site form post with the right token.
    let no_token = post(vec![("description", "a".into())], vec![])
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let wrong = post(vec![("csrf_token", "nope".into())], vec![])
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let cross_site = post(
        vec![("csrf_token", token.clone())],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let other_origin = post(
        vec![("csrf_token", token.clone())],
        vec![("origin", "https://evil.example")],
    )
    .await
    .unwrap();
    assert_eq!(other_origin.status(), StatusCode::FORBIDDEN);
    assert!(env.seed.is_empty(), "a refused form created a key");

    // Same origin with the token: created, shown once on the page (201, no-store).
    let ok = post(
        vec![
            ("csrf_token", token.clone()),
            ("description", "from the page".into()),
        ],
        vec![("sec-fetch-site", "same-origin")],
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert_eq!(ok.headers()["cache-control"], "no-store");
    let html = ok.text().await.unwrap();
    assert!(html.contains("id=\"new-key\""));
    assert_eq!(env.seed.len(), 1);

    // The JSON API with a cookie: the token goes in `x-csrf-token`.
    let api = |token: Option<String>| {
        let mut request = env
            .http
            .post(format!("{}/keys/api", env.base))
            .header("cookie", &cookie)
            .json(&json!({}));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };
    assert_eq!(api(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        api(Some(token)).await.unwrap().status(),
        StatusCode::CREATED
    );
    // A bearer key needs no CSRF token (nothing ambient about it).
    let admin = env.admin("org_acme");
    let response = env.call("POST", "/keys/api", &admin, Some(json!({}))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn page_forms_rotate_and_revoke_with_confirmation() {
    let env = env(Backend::Memory).await;
    let (key, id) = env.seed(CreateToken::new("org_acme").user("usr_alice"));
    let (_, bob_id) = env.user("org_acme", "usr_bob");
    let cookie = env.cookie(Session::user("org_acme", "usr_alice", "alice"));
    let token = csrf_token(&env, &cookie).await;
    let form = |path: String, form: Vec<(&'static str, String)>| {
        env.http
            .post(format!("{}{path}", env.base))
            .header("cookie", &cookie)
            .header("sec-fetch-site", "same-origin")
            .form(&form)
            .send()
    };

    // A user sees only their keys; Bob's key is 404 for her forms.
    let page = env
        .http
        .get(format!("{}/keys", env.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&id) && !page.contains(&bob_id));
    assert!(
        !page.contains("name=\"user_id\""),
        "users get no user field"
    );
    let response = form(
        format!("/keys/revoke/{bob_id}"),
        vec![("csrf_token", token.clone()), ("confirm", "yes".into())],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Revoke without the confirmation: a confirmation page, nothing revoked.
    let response = form(
        format!("/keys/revoke/{id}"),
        vec![("csrf_token", token.clone())],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("Yes, revoke key"));
    assert_eq!(env.protected(&key).await, StatusCode::OK);

    // Rotate with a one-hour grace on the page: the new key shown, the old one still works.
    let response = form(
        format!("/keys/rotate/{id}"),
        vec![
            ("csrf_token", token.clone()),
            ("grace_seconds", "3600".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let html = response.text().await.unwrap();
    let marker = "id=\"new-key\" type=\"text\" readonly autofocus spellcheck=\"false\" autocomplete=\"off\" value=\"";
    let start = html.find(marker).expect("the new key on the page") + marker.len();
    let new_key = &html[start..start + html[start..].find('"').unwrap()];
    assert_eq!(env.protected(new_key).await, StatusCode::OK);
    assert_eq!(env.protected(&key).await, StatusCode::OK);

    // Confirmed revocation: redirect back to the page (POST-redirect-GET), key refused.
    let response = form(
        format!("/keys/revoke/{id}"),
        vec![("csrf_token", token), ("confirm", "yes".into())],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK); // reqwest followed the 303
    assert_eq!(response.url().path(), "/keys");
    assert_eq!(env.protected(&key).await, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// Logs: token ids and actors, never a key.

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_the_key_and_the_actor_never_the_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = env(Backend::Memory).await;
    let admin = env.admin("org_acme");
    let response = env.call("POST", "/keys/api", &admin, Some(json!({}))).await;
    let created: Value = response.json().await.unwrap();
    let key = created["token"].as_str().unwrap().to_owned();
    let id = created["token_id"].as_str().unwrap().to_owned();
    let response = env
        .call("POST", &format!("/keys/api/{id}/rotate"), &admin, None)
        .await;
    let rotated: Value = response.json().await.unwrap();
    let new_key = rotated["token"].as_str().unwrap().to_owned();
    let new_id = rotated["token_id"].as_str().unwrap().to_owned();
    env.call("DELETE", &format!("/keys/api/{new_id}"), &admin, None)
        .await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for secret in [&admin, &key, &new_key] {
        assert!(!logs.contains(secret.as_str()), "a key reached the logs");
    }
    for action in ["created", "rotated", "revoked"] {
        assert!(
            logs.contains(&format!("action=\"{action}\"")),
            "{action} not logged:\n{logs}"
        );
    }
    assert!(logs.contains(&id) && logs.contains(&new_id));
    assert!(logs.contains("actor=\"key:apit_"));
}

#[tokio::test]
async fn audit_logs_escape_the_actor() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = env(Backend::Memory).await;
    // An app-supplied actor label with a line break: it must not start a log line of its own.
    let forged = "alice\n2030-01-01T00:00:00Z  INFO axum_api_key::manage: API key revoked";
    let cookie = env.cookie(Session::admin("org_acme", forged));
    let token = csrf_token(&env, &cookie).await;
    let response = env
        .http
        .post(format!("{}/keys/api", env.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(env.audits.0.lock().unwrap()[0].actor, forged); // listeners get it as it is

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        !logs.contains(forged),
        "a raw line break in a log field:\n{logs}"
    );
    assert!(
        logs.contains(r#"actor="alice\n2030-01-01T00:00:00Z"#),
        "{logs}"
    );
    assert!(
        logs.lines().all(|line| !line.starts_with("2030-")),
        "a forged log line:\n{logs}"
    );
}

// ---------------------------------------------------------------------------------------------
// Rotation renews the secret, never the power or the lifetime.

async fn rotation_keeps_the_predecessors_limits(backend: Backend) {
    let env = env(backend).await;
    let admin = env.admin("org_acme");
    let (alice, _) = env.user("org_acme", "usr_alice");
    let in_an_hour = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let (_, short_id) = env.seed(
        CreateToken::new("org_acme")
            .user("usr_alice")
            .expiry(in_an_hour),
    );
    let expiry_of =
        |body: &Value| OffsetDateTime::parse(body["expiry"].as_str().unwrap(), &Rfc3339).unwrap();

    // No expiry asked: the successor expires with its predecessor, not in 365 days.
    let response = env
        .call(
            "POST",
            &format!("/keys/api/{short_id}/rotate"),
            &alice,
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rotated: Value = response.json().await.unwrap();
    let successor_id = rotated["token_id"].as_str().unwrap().to_owned();
    let expiry = expiry_of(&rotated);
    assert!(
        (expiry - in_an_hour).abs() <= time::Duration::SECOND,
        "{expiry} vs {in_an_hour}"
    );
    // Asking for longer: 422, nothing rotated.
    let later = (in_an_hour + time::Duration::days(30))
        .format(&Rfc3339)
        .unwrap();
    let response = env
        .call(
            "POST",
            &format!("/keys/api/{successor_id}/rotate"),
            &alice,
            Some(json!({"expiry": later})),
        )
        .await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".into())
    );
    // An admin too: the successor inherits the predecessor's end.
    let response = env
        .call(
            "POST",
            &format!("/keys/api/{successor_id}/rotate"),
            &admin,
            Some(json!({"expiry": later})),
        )
        .await;
    assert_eq!(error_of(response).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(env.seed.get_by_id(&successor_id).is_ok());

    // A key carrying the admin claim: only an admin rotates it.
    let (granted, granted_id) = env.seed(
        CreateToken::new("org_acme")
            .user("usr_alice")
            .claim("role", "key_admin"),
    );
    let path = format!("/keys/api/{granted_id}/rotate");
    let response = env.call("POST", &path, &alice, None).await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::FORBIDDEN, "insufficient_scope".into())
    );
    assert_eq!(env.protected(&granted).await, StatusCode::OK);
    let response = env.call("POST", &path, &admin, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rotated: Value = response.json().await.unwrap();
    assert_eq!(rotated["custom_claims"]["role"], "key_admin");
}

#[tokio::test]
async fn rotation_keeps_the_predecessors_limits_on_the_embedded_store() {
    rotation_keeps_the_predecessors_limits(Backend::Memory).await;
}

#[tokio::test]
async fn rotation_keeps_the_predecessors_limits_on_scalekit() {
    rotation_keeps_the_predecessors_limits(Backend::Scalekit).await;
}

// ---------------------------------------------------------------------------------------------
// Configuration that could overflow, and the per-user cap.

#[tokio::test]
async fn a_huge_max_lifetime_is_clamped_not_a_panic() {
    let options = Options {
        max_lifetime: Some(Some(Duration::MAX)),
        ..Options::default()
    };
    let env = env_full(Backend::Memory, false, options).await;
    let admin = env.admin("org_acme");
    let (_, id) = env.seed(CreateToken::new("org_acme"));
    let response = env.call("POST", "/keys/api", &admin, Some(json!({}))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let expiry = OffsetDateTime::parse(created["expiry"].as_str().unwrap(), &Rfc3339).unwrap();
    let years = (expiry - OffsetDateTime::now_utc()).whole_days() / 365;
    assert_eq!(years, 99, "clamped to 100 years: {expiry}");
    let response = env
        .call("POST", &format!("/keys/api/{id}/rotate"), &admin, None)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // The page renders the cap too.
    let cookie = env.cookie(Session::admin("org_acme", "admin@acme.test"));
    let response = env
        .http
        .get(format!("{}/keys", env.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn users_hold_a_bounded_number_of_keys(backend: Backend) {
    let options = Options {
        max_keys_per_user: Some(3),
        ..Options::default()
    };
    let env = env_full(backend, false, options).await;
    let admin = env.admin("org_acme");
    let (alice, alice_id) = env.user("org_acme", "usr_alice");
    let create = |key: String, body: Value| {
        let env = &env;
        async move { env.call("POST", "/keys/api", &key, Some(body)).await }
    };

    // Alice holds one key; two more are fine, the fourth is refused.
    for _ in 0..2 {
        assert_eq!(
            create(alice.clone(), json!({})).await.status(),
            StatusCode::CREATED
        );
    }
    let response = create(alice.clone(), json!({})).await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".into())
    );
    assert_eq!(ids(&env.list(&alice, "").await).len(), 3);

    // At the cap: rotating with a grace (one more key for a while) is refused, without one
    // it replaces the key.
    let rotate = format!("/keys/api/{alice_id}/rotate");
    let response = env
        .call("POST", &rotate, &alice, Some(json!({"grace_seconds": 60})))
        .await;
    assert_eq!(error_of(response).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let response = env.call("POST", &rotate, &alice, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rotated: Value = response.json().await.unwrap();
    let alice = rotated["token"].as_str().unwrap().to_owned();
    assert_eq!(ids(&env.list(&alice, "").await).len(), 3);

    // Revoking one makes room again.
    let victim = ids(&env.list(&alice, "").await)[1].clone();
    let response = env
        .call("DELETE", &format!("/keys/api/{victim}"), &alice, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        create(alice.clone(), json!({})).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        create(alice.clone(), json!({})).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Admins are not capped, for themselves or for the users they create keys for.
    for _ in 0..4 {
        let response = create(admin.clone(), json!({"user_id": "usr_alice"})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(ids(&env.list(&alice, "").await).len(), 7);
}

#[tokio::test]
async fn users_hold_a_bounded_number_of_keys_on_the_embedded_store() {
    users_hold_a_bounded_number_of_keys(Backend::Memory).await;
}

#[tokio::test]
async fn users_hold_a_bounded_number_of_keys_on_scalekit() {
    users_hold_a_bounded_number_of_keys(Backend::Scalekit).await;
}
