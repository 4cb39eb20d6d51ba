//! The key never leaves the request (design rule 2): not in logs at TRACE (ours, and those of
//! reqwest, hyper and tower), not in `Debug` or `Display` of any public type, not in rejection
//! bodies or headers, not in errors, whatever Scalekit answers.
//!
//! One global subscriber (this test binary's own) writes every event and span of every crate
//! at TRACE into memory, `log` records included; each test registers the keys it uses, and
//! checks the whole capture for any of them, and for any 20-character piece of them, at its
//! end.

mod support;

use std::fmt::{Debug, Display};
use std::sync::{Mutex, MutexGuard};

use axum::Router;
use axum::routing::get;
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::{
    CreateToken, KeyEvent, KeyEventListener, KeyEventSource, ListTokens, UpdateToken,
};
use axum_api_key::scalekit::ScalekitError;
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use axum_api_key::validator::BoxValidator;
use axum_api_key::{ApiKey, ApiKeyLayer, InMemoryTokens, OrgScope, TokenInfo, Validator};
use serde_json::json;
use support::log_capture::{capture_everything, captured};

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a key that must appear nowhere; returns it.
fn secret(key: &str) -> String {
    lock(&SECRETS).push(key.to_owned());
    key.to_owned()
}

/// 20-character pieces of `key` (every 4th offset, and the last): enough to catch a key that
/// was cut, not so short that `token_suffix`-sized pieces count.
fn pieces(key: &str) -> Vec<&str> {
    const PIECE: usize = 20;
    if key.len() <= PIECE {
        return vec![key];
    }
    let mut out: Vec<&str> = (0..=key.len() - PIECE)
        .step_by(4)
        .map(|at| &key[at..at + PIECE])
        .collect();
    out.push(&key[key.len() - PIECE..]);
    out
}

fn assert_no_secret_in(what: &str, text: &str) {
    for key in lock(&SECRETS).iter() {
        for piece in pieces(key) {
            assert!(
                !text.contains(piece),
                "{what} shows (part of) a key: {piece:?} in\n{}",
                excerpt(text, piece)
            );
        }
    }
}

fn excerpt(text: &str, piece: &str) -> String {
    let at = text.find(piece).unwrap_or(0);
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(200)
        .map_or(0, |(i, _)| i);
    let end = (at + 200).min(text.len());
    let end = (end..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap();
    text[start..end].to_owned()
}

/// Neither `Debug` (plain and alternate) nor `Display` of `value` shows a key.
fn assert_hidden(what: &str, value: &(impl Debug + Display)) {
    assert_no_secret_in(&format!("{what} (Display)"), &value.to_string());
    assert_hidden_debug(what, value);
}

fn assert_hidden_debug(what: &str, value: &impl Debug) {
    assert_no_secret_in(&format!("{what} (Debug)"), &format!("{value:?}"));
    assert_no_secret_in(&format!("{what} (Debug #)"), &format!("{value:#?}"));
}

/// The whole capture so far is free of keys, and the capture works (it saw TRACE lines).
fn assert_logs_clean() {
    let captured = captured();
    assert!(
        captured.contains("TRACE"),
        "the capture saw no TRACE line: is the subscriber installed?"
    );
    assert_no_secret_in("the TRACE log", &captured);
}

/// A listener that keeps the rendering of every event it hears.
#[derive(Default)]
struct EventLog(Mutex<Vec<String>>);

impl KeyEventListener for EventLog {
    fn on_event(&self, event: &KeyEvent) {
        lock(&self.0).push(format!("{event:?} {event:#?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_paths_never_show_the_key() {
    capture_everything();
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let events = std::sync::Arc::new(EventLog::default());
    client.key_events().subscribe(events.clone());
    let mut errors: Vec<ScalekitError> = Vec::new();

    // Create, with an answer we decode, and answers we cannot.
    let created = client
        .create_token(
            CreateToken::new("org_h")
                .user("usr_h")
                .claim("env", "prod")
                .description("hygiene"),
        )
        .await
        .unwrap();
    let key = secret(created.key.expose_secret());
    assert_hidden_debug("CreatedToken", &created);
    assert_hidden("ApiKey", &created.key);
    assert_hidden_debug("TokenInfo", &created.info);
    for fault in [Fault::WrongTypes, Fault::Truncated, Fault::html(502)] {
        fake.fail_next(Op::Create, fault);
        errors.push(
            client
                .create_token(CreateToken::new("org_h"))
                .await
                .unwrap_err(),
        );
    }
    // An answer whose `token` field is not a string: serde's own message would quote it.
    fake.fail_next(
        Op::Create,
        Fault::json(200, json!({"token": [key.clone()], "token_id": "apit_1"})),
    );
    errors.push(
        client
            .create_token(CreateToken::new("org_h"))
            .await
            .unwrap_err(),
    );

    // Validate: good, and every way it can fail, including a server that echoes the key.
    let info = client.validate_token(&key).await.unwrap();
    assert_hidden_debug("TokenInfo", &info);
    let validator_ok = client.validate(&ApiKey::new(key.clone())).await.unwrap();
    assert_hidden_debug("Authenticated", &validator_ok);
    for fault in [
        Fault::rpc(400, 3, &format!("invalid token {key}")),
        Fault::rpc(403, 7, &format!("{key} is not yours")),
        // A server quoting part of the key.
        Fault::rpc(400, 3, &format!("invalid token {}...", &key[..40])),
        Fault::rpc(409, 6, &format!("conflict on {key}")),
        Fault::json(
            400,
            json!({"code": 3, "message": "bad", "details": [{"field": key, "description": key}]}),
        ),
        Fault::rpc(404, 5, &format!("token {key} not found")),
        Fault::rpc(500, 13, &format!("panic: {key}")),
        Fault::rate_limited(3),
        Fault::html(503),
        Fault::Truncated,
        Fault::WrongTypes,
        Fault::Empty,
        Fault::Huge(2 * 1024 * 1024),
        Fault::Reset,
        Fault::json(
            200,
            json!({"token_info": {"token_id": key, "organization_id": 5}}),
        ),
        Fault::json(
            200,
            json!({"token_info": {"token_id": "apit_1", "organization_id": "org_1", "expiry": key}}),
        ),
    ] {
        fake.set_fault(Op::Validate, Some(fault));
        errors.push(client.validate_token(&key).await.unwrap_err());
        let verdict = client
            .validate(&ApiKey::new(key.clone()))
            .await
            .unwrap_err();
        assert_hidden("ValidateError", &verdict);
        fake.set_fault(Op::Validate, None);
    }

    // List (no key in the request, but answers could hold anything).
    let page = client.list_tokens(&ListTokens::new("org_h")).await.unwrap();
    assert_hidden_debug("TokenPage", &page);
    fake.fail_next(Op::List, Fault::WrongTypes);
    errors.push(
        client
            .list_tokens(&ListTokens::new("org_h"))
            .await
            .unwrap_err(),
    );

    // Update by key: good, echoed in a 400, unknown, undecodable.
    let update = UpdateToken::new(key.clone()).description("renamed");
    assert_hidden_debug("UpdateToken", &update);
    let updated = client.update_token(update.clone()).await.unwrap();
    assert_hidden_debug("TokenInfo", &updated);
    for fault in [
        Fault::rpc(400, 3, &format!("cannot update {key}")),
        Fault::rpc(404, 5, "not found"),
        Fault::Empty,
        Fault::html(500),
    ] {
        fake.fail_next(Op::Update, fault);
        errors.push(client.update_token(update.clone()).await.unwrap_err());
    }
    let unknown = secret(&support::unknown_key(11));
    errors.push(
        client
            .update_token(UpdateToken::new(unknown.clone()).description("x"))
            .await
            .unwrap_err(),
    );

    // Invalidate by key: failures first (one echoing the key), then for real, then again.
    fake.fail_next(Op::Invalidate, Fault::rpc(400, 3, &format!("bad {key}")));
    errors.push(client.invalidate_token(&key).await.unwrap_err());
    fake.fail_next(Op::Invalidate, Fault::html(503));
    errors.push(client.invalidate_token(&key).await.unwrap_err());
    client.invalidate_token(&key).await.unwrap();
    client.invalidate_token(&key).await.unwrap();
    client.invalidate_token(&unknown).await.unwrap();
    errors.push(client.validate_token(&key).await.unwrap_err());

    // The token endpoint failing, while keys are being validated.
    let fresh = fake.client();
    fake.fail_next(Op::Token, Fault::html(500));
    errors.push(fresh.validate_token(&key).await.unwrap_err());

    assert!(errors.len() > 25, "{}", errors.len());
    for error in &errors {
        assert_hidden("ScalekitError", error);
        assert_hidden("ValidateError", &error.to_validate_error());
    }
    for rendered in lock(&events.0).iter() {
        assert_no_secret_in("KeyEvent", rendered);
    }
    assert_hidden_debug("ScalekitClient", &client);
    assert_hidden_debug("FakeScalekit", &fake);
    assert_hidden_debug("InMemoryTokens", fake.tokens());
    // The capture did see the scrubbed echoes (so a leak there would have been caught).
    assert!(captured().contains("[redacted]"));
    assert_logs_clean();
}

async fn whoami(
    OrgScope {
        organization_id, ..
    }: OrgScope,
) -> String {
    organization_id
}

async fn me(info: TokenInfo) -> axum::Json<TokenInfo> {
    axum::Json(info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_never_shows_the_key() {
    capture_everything();
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let cache = CachedValidator::builder(client.clone()).build();
    let valid = client
        .create_token(CreateToken::new("org_l"))
        .await
        .unwrap();
    let revoked = client
        .create_token(CreateToken::new("org_l"))
        .await
        .unwrap();
    let valid_key = secret(valid.key.expose_secret());
    let revoked_key = secret(revoked.key.expose_secret());
    let unknown_key = secret(&support::unknown_key(21));
    // In-memory store too (its own paths and Debug).
    let memory = InMemoryTokens::new();
    let memory_key = secret(
        memory
            .create(CreateToken::new("org_m"))
            .unwrap()
            .key
            .expose_secret(),
    );

    let http = reqwest::Client::new();
    let mut bodies: Vec<String> = Vec::new();
    for validator in [
        BoxValidator::new(cache.clone()),
        BoxValidator::new(client.clone()),
        BoxValidator::new(CachedValidator::new(memory.clone())),
    ] {
        let layer = ApiKeyLayer::new(validator).strip_authorization(false);
        let app = Router::new()
            .route("/whoami", get(whoami))
            .route("/me", get(me))
            .layer(layer.clone());
        let url = support::serve(app).await;
        let send = |value: Vec<String>| {
            let mut request = http.get(format!("{url}/me"));
            for value in value {
                request = request.header("authorization", value);
            }
            request.send()
        };
        let mut values: Vec<Vec<String>> = Vec::new();
        for key in [&valid_key, &revoked_key, &unknown_key, &memory_key] {
            values.extend([
                vec![format!("Bearer {key}")],
                vec![format!("bearer   {key}")],
                // Rejected locally: JWT-shaped, token-id-shaped, too long, bad characters,
                // another scheme, two headers, two credentials in one.
                vec![format!("Bearer {key}.{key}.sig")],
                vec![format!("Bearer apit_{key}")],
                vec![format!("Bearer {}", key.repeat(8))],
                vec![format!("Bearer {key}!")],
                vec![format!("Bearer {key}\u{7f}")],
                vec![format!("Basic {key}")],
                vec![format!("Bearer {key}"), format!("Bearer {valid_key}")],
                vec![format!("Bearer {key} {key}")],
            ]);
        }
        for (round, value) in values.iter().enumerate() {
            if round == values.len() / 2 {
                client.invalidate_token(&revoked.token_id).await.unwrap();
            }
            let Ok(response) = send(value.clone()).await else {
                continue; // a header reqwest itself refuses to send
            };
            let mut text = format!("{} {:?}", response.status(), response.headers());
            text.push_str(&response.text().await.unwrap());
            bodies.push(text);
        }
        // Upstream faults while keys are validated (some cached, some not).
        for fault in [
            Fault::html(503),
            Fault::rpc(400, 3, &format!("bad {unknown_key}")),
            Fault::Reset,
        ] {
            fake.set_fault(Op::Validate, Some(fault));
            for key in [&valid_key, &unknown_key] {
                let response = send(vec![format!("Bearer {key}")]).await.unwrap();
                let headers = format!("{:?}", response.headers());
                bodies.push(headers + &response.text().await.unwrap());
            }
            fake.set_fault(Op::Validate, None);
        }
        // The layer outside a router, and its rejections as values.
        for key in [&valid_key, &revoked_key, &unknown_key] {
            match layer.validate_key(key).await {
                Ok(auth) => assert_hidden_debug("Authenticated", &auth),
                Err(rejection) => {
                    assert_hidden("AuthRejection", &rejection);
                    use axum::response::IntoResponse;
                    let response = rejection.into_response();
                    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                        .await
                        .unwrap();
                    bodies.push(String::from_utf8_lossy(&body).into_owned());
                }
            }
        }
        assert_hidden_debug("ApiKeyLayer", &layer);
    }
    assert!(bodies.iter().any(|b| b.contains("invalid_token")));
    assert!(bodies.iter().any(|b| b.contains("org_l")));
    for body in &bodies {
        assert_no_secret_in("a response", body);
    }
    assert_hidden_debug("CachedValidator", &cache);
    assert_hidden_debug("CacheStats", &cache.stats());
    assert_hidden_debug("InMemoryTokens", &memory);
    assert_logs_clean();
}
