//! The fault matrix: what a client of an Axum app sees, for every upstream behaviour of Scalekit
//! and every state of the key it presents, over real HTTP.
//!
//! The app is `ApiKeyLayer` over (a `CachedValidator` over) the `ScalekitClient`, pointed at
//! the fake Scalekit and subscribed to the client's key events, served on 127.0.0.1:0. Each row
//! (upstream behaviour) runs in three modes:
//!
//! * `cache`: `CachedValidator` with its defaults (30 s TTL, no stale-if-error);
//! * `stale`: `CachedValidator` with a 1 s TTL and `stale_if_error(60 s)`, the TTL of the "seen"
//!   key having passed when the fault starts;
//! * `off`: the client alone, no cache.
//!
//! The whole matrix runs once per transport of the client (REST, and gRPC against the fake's
//! `ApiTokenService`): the expectations are the same.
//!
//! The expected statuses come from [`expected`]; `docs/fault-matrix.md` holds the same table,
//! rendered by [`render_table`] and checked by `docs_table_matches_the_test` (regenerate it with
//! `UPDATE_FAULT_MATRIX=1 cargo test --all-features --test fault_matrix`).

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::CreateToken;
use axum_api_key::scalekit::ScalekitClient;
use axum_api_key::scalekit::Transport;
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use axum_api_key::validator::BoxValidator;
use axum_api_key::{ApiKeyLayer, OrgScope};
use futures_util::future::join_all;
use time::OffsetDateTime;

/// How long the "expired" key lives: long enough for the set-up to present it once while it is
/// valid, even on a loaded machine.
const EXPIRY_IN: Duration = Duration::from_secs(4);
/// The client's validate deadline (the "timeout" row's fake waits far longer).
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(3);
const ORG: &str = "org_matrix";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Cache,
    Stale,
    Off,
}

const MODES: [Mode; 3] = [Mode::Cache, Mode::Stale, Mode::Off];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyState {
    /// Valid, and validated once before the fault started.
    Seen,
    /// Valid, never presented before.
    Unseen,
    /// Well-formed, never minted.
    Unknown,
    /// Validated once, then revoked through the crate (`ScalekitClient::invalidate_token` by
    /// token id), before the fault started.
    Revoked,
    /// Validated once while valid; its `expiry` has passed since.
    Expired,
}

const KEY_STATES: [KeyState; 5] = [
    KeyState::Seen,
    KeyState::Unseen,
    KeyState::Unknown,
    KeyState::Revoked,
    KeyState::Expired,
];

impl KeyState {
    fn label(self) -> &'static str {
        match self {
            Self::Seen => "valid, seen",
            Self::Unseen => "valid, unseen",
            Self::Unknown => "unknown",
            Self::Revoked => "revoked (through the crate)",
            Self::Expired => "expired",
        }
    }
}

/// What the upstream behaviour means for a validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Scalekit answers normally (possibly after an access-token refresh).
    Answers,
    /// Scalekit says "not valid" for every key (404, 400, 403, a 401 a fresh token does not
    /// cure).
    Verdict,
    /// Scalekit cannot be asked or answers nonsense: an outage.
    Unavailable,
    /// Scalekit is rate-limiting us (429): it cannot tell either, but this is no outage, since a
    /// flood of random keys can cause it, so stale-if-error does not cover it.
    RateLimited,
}

enum Upstream {
    Normal,
    /// Applied to every validate call.
    Validate(Fault),
    /// Every access token issued so far is refused once: 401, refresh, retry.
    ExpireAccessTokens,
    /// The access token is refused and `/oauth/token` fails with this fault.
    TokenEndpoint(Fault),
    /// The fake is shut down: connections are refused.
    Refused,
}

struct Row {
    name: &'static str,
    upstream: Upstream,
    class: Class,
    /// The `Retry-After` the 503 answers must carry, when the upstream dictates it.
    retry_after: Option<&'static str>,
}

fn rows() -> Vec<Row> {
    let row = |name, upstream, class| Row {
        name,
        upstream,
        class,
        retry_after: None,
    };
    vec![
        row("200 (normal)", Upstream::Normal, Class::Answers),
        row(
            "404 `{code: 5}`",
            Upstream::Validate(Fault::rpc(404, 5, "token not found")),
            Class::Verdict,
        ),
        row(
            "400 `{code: 3}`",
            Upstream::Validate(Fault::rpc(400, 3, "invalid token")),
            Class::Verdict,
        ),
        row(
            "401 once, then recovery (access token expired)",
            Upstream::ExpireAccessTokens,
            Class::Answers,
        ),
        row(
            "401 on every call, even with a fresh access token",
            Upstream::Validate(Fault::Unauthorized),
            Class::Verdict,
        ),
        row(
            "403 `{code: 7}`",
            Upstream::Validate(Fault::rpc(403, 7, "permission denied")),
            Class::Verdict,
        ),
        // A status alone is no verdict: only Scalekit's `google.rpc.Status` with the
        // matching code is. A proxy's, a WAF's or a wrong URL's page is an outage, and ends
        // no cache record. (Over gRPC these go out as is, with no `grpc-status`.)
        row(
            "404, HTML body (a proxy, a wrong URL)",
            Upstream::Validate(Fault::html(404)),
            Class::Unavailable,
        ),
        row(
            "403, HTML body (a WAF)",
            Upstream::Validate(Fault::html(403)),
            Class::Unavailable,
        ),
        row(
            "403, empty body",
            Upstream::Validate(Fault::empty(403)),
            Class::Unavailable,
        ),
        row(
            "401, HTML body, even with a fresh access token",
            Upstream::Validate(Fault::html(401)),
            Class::Unavailable,
        ),
        Row {
            name: "429 with `Retry-After: 7`",
            upstream: Upstream::Validate(Fault::rate_limited(7)),
            class: Class::RateLimited,
            retry_after: Some("7"),
        },
        row(
            "500 `{code: 13}`",
            Upstream::Validate(Fault::rpc(500, 13, "internal")),
            Class::Unavailable,
        ),
        row(
            "502, HTML body",
            Upstream::Validate(Fault::html(502)),
            Class::Unavailable,
        ),
        row(
            "503, HTML body",
            Upstream::Validate(Fault::html(503)),
            Class::Unavailable,
        ),
        row(
            "504 `{code: 4}`",
            Upstream::Validate(Fault::rpc(504, 4, "deadline exceeded")),
            Class::Unavailable,
        ),
        row("connection refused", Upstream::Refused, Class::Unavailable),
        row(
            "connection reset before the answer",
            Upstream::Validate(Fault::Reset),
            Class::Unavailable,
        ),
        row(
            "no answer within the validate deadline (3 s)",
            Upstream::Validate(Fault::Delay(Duration::from_secs(30))),
            Class::Unavailable,
        ),
        row(
            "200, truncated JSON",
            Upstream::Validate(Fault::Truncated),
            Class::Unavailable,
        ),
        row(
            "200, wrong-typed JSON",
            Upstream::Validate(Fault::WrongTypes),
            Class::Unavailable,
        ),
        row(
            "200 `{}` (no `token_info`)",
            Upstream::Validate(Fault::Empty),
            Class::Unavailable,
        ),
        row(
            "200, 2 MiB body (over the 1 MiB cap)",
            Upstream::Validate(Fault::Huge(2 * 1024 * 1024)),
            Class::Unavailable,
        ),
        row(
            "`/oauth/token` 500 while the access token is refused",
            Upstream::TokenEndpoint(Fault::html(500)),
            Class::Unavailable,
        ),
    ]
}

/// The status a client must see. The reasoning, cell by cell, is in `docs/fault-matrix.md`.
fn expected(mode: Mode, class: Class, key: KeyState) -> u16 {
    use KeyState::*;
    match (class, key) {
        (Class::Answers, Seen | Unseen) => 200,
        (Class::Answers, Unknown | Revoked | Expired) => 401,
        // A fresh cache entry is served without asking; past its TTL the upstream's verdict
        // wins (stale-if-error only covers "cannot tell").
        (Class::Verdict, Seen) if mode == Mode::Cache => 200,
        (Class::Verdict, _) => 401,
        (Class::Unavailable, Seen) if mode != Mode::Off => 200,
        // A 429 is no outage: a fresh entry still serves, a stale one does not.
        (Class::RateLimited, Seen) if mode == Mode::Cache => 200,
        // Revocations through the crate are tombstoned in the cache: refused with no call.
        (Class::Unavailable | Class::RateLimited, Revoked) if mode != Mode::Off => 401,
        // Fail closed: unknown to the crate, and Scalekit cannot tell.
        (Class::Unavailable | Class::RateLimited, _) => 503,
    }
}

struct Observation {
    status: u16,
    retry_after: Option<String>,
    challenge: Option<String>,
    body: String,
}

async fn whoami(
    OrgScope {
        organization_id, ..
    }: OrgScope,
) -> String {
    organization_id
}

/// Runs one row in one mode: returns what each key state got, in [`KEY_STATES`] order.
async fn run(row: &Row, mode: Mode, transport: Transport) -> Vec<Observation> {
    let fake = FakeScalekit::start().await;
    let client: ScalekitClient = fake
        .client_builder()
        .transport(transport)
        .validate_timeout(VALIDATE_TIMEOUT)
        .build()
        .unwrap();
    let validator = match mode {
        Mode::Cache => BoxValidator::new(CachedValidator::builder(client.clone()).build()),
        Mode::Stale => BoxValidator::new(
            CachedValidator::builder(client.clone())
                .ttl(Duration::from_secs(1))
                .stale_if_error(Duration::from_secs(60))
                .build(),
        ),
        Mode::Off => BoxValidator::new(client.clone()),
    };
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(ApiKeyLayer::new(validator));
    let url = support::serve(app).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let send = |key: String| {
        let request = http.get(format!("{url}/whoami")).bearer_auth(key);
        async move {
            let response = request.send().await.expect("the app answers");
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            let (retry_after, challenge) = (header("retry-after"), header("www-authenticate"));
            Observation {
                status: response.status().as_u16(),
                retry_after,
                challenge,
                body: response.text().await.unwrap(),
            }
        }
    };
    let warm = |key: String, what: &'static str| {
        let request = send(key);
        async move {
            let seen = request.await;
            assert_eq!(
                seen.status, 200,
                "{what}: set-up request refused ({}); machine too slow?",
                seen.body
            );
        }
    };

    // Set-up, the expiring key first.
    let expires_at = tokio::time::Instant::now() + EXPIRY_IN;
    let expired = fake
        .tokens()
        .create(CreateToken::new(ORG).expiry(OffsetDateTime::now_utc() + EXPIRY_IN))
        .unwrap();
    warm(expired.key.expose_secret().to_owned(), "expired").await;
    let mint = || client.create_token(CreateToken::new(ORG));
    let seen = mint().await.unwrap();
    let unseen = mint().await.unwrap();
    let revoked = mint().await.unwrap();
    warm(seen.key.expose_secret().to_owned(), "seen").await;
    warm(revoked.key.expose_secret().to_owned(), "revoked").await;
    client.invalidate_token(&revoked.token_id).await.unwrap();
    let unknown = support::unknown_key(rand::random());
    tokio::time::sleep_until(expires_at + Duration::from_millis(500)).await;

    // The fault.
    let mut reserved = None;
    let mut fake = Some(fake);
    let live = fake.as_ref().unwrap();
    match &row.upstream {
        Upstream::Normal => {}
        Upstream::Validate(fault) => live.set_fault(Op::Validate, Some(fault.clone())),
        Upstream::ExpireAccessTokens => live.expire_access_tokens(),
        Upstream::TokenEndpoint(fault) => {
            live.set_fault(Op::Token, Some(fault.clone()));
            live.expire_access_tokens();
        }
        Upstream::Refused => {
            let addr: std::net::SocketAddr = live.url()["http://".len()..].parse().unwrap();
            fake.take();
            reserved = Some(reserve(addr).await.expect("the fake let go of its port"));
        }
    }

    let keys = KEY_STATES.map(|state| match state {
        KeyState::Seen => seen.key.expose_secret().to_owned(),
        KeyState::Unseen => unseen.key.expose_secret().to_owned(),
        KeyState::Unknown => unknown.clone(),
        KeyState::Revoked => revoked.key.expose_secret().to_owned(),
        KeyState::Expired => expired.key.expose_secret().to_owned(),
    });
    let observed = join_all(keys.map(&send)).await;
    drop((fake, reserved));
    observed
}

/// Binds `addr` without listening once the fake has let go of it: connections to it are
/// refused, and no other test's server can take the port meanwhile.
async fn reserve(addr: std::net::SocketAddr) -> Option<tokio::net::TcpSocket> {
    for _ in 0..100 {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        // Closed connections may linger on the port (TIME_WAIT); they do not stop a bind.
        socket.set_reuseaddr(true).ok()?;
        if socket.bind(addr).is_ok() {
            return Some(socket);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_and_key_state_gets_its_exact_status() {
    check_matrix(Transport::Rest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_and_key_state_gets_its_exact_status_over_grpc() {
    check_matrix(Transport::Grpc).await;
}

async fn check_matrix(transport: Transport) {
    let rows = rows();
    let runs = rows
        .iter()
        .flat_map(|row| MODES.map(|mode| (row, mode)))
        .map(|(row, mode)| async move { (row, mode, run(row, mode, transport).await) });
    let results = join_all(runs).await;

    let invalid_body = r#"{"error":"invalid_token","error_description":"the API key is invalid, revoked or expired"}"#;
    let mut failures = Vec::new();
    let mut seen_table = String::new();
    for (row, mode, observed) in &results {
        let mut line = format!("{:<55} {:<6}", row.name, format!("{mode:?}"));
        for (state, seen) in KEY_STATES.iter().zip(observed) {
            let want = expected(*mode, row.class, *state);
            let _ = write!(line, " {:>4}", seen.status);
            let cell = format!("{} / {mode:?} / {}", row.name, state.label());
            if seen.status != want {
                failures.push(format!(
                    "{cell}: expected {want}, got {} {}",
                    seen.status, seen.body
                ));
                continue;
            }
            match seen.status {
                200 => assert_eq!(seen.body, ORG, "{cell}"),
                401 => {
                    // One body and challenge for every reason: nothing tells them apart.
                    assert_eq!(seen.body, invalid_body, "{cell}");
                    assert!(
                        seen.challenge
                            .as_deref()
                            .is_some_and(|c| c.contains("error=\"invalid_token\"")),
                        "{cell}"
                    );
                }
                503 => {
                    assert!(seen.body.contains("temporarily_unavailable"), "{cell}");
                    let retry_after = seen.retry_after.as_deref().expect("503 has Retry-After");
                    assert!(retry_after.parse::<u64>().is_ok_and(|s| s >= 1), "{cell}");
                    if let Some(want) = row.retry_after {
                        assert_eq!(retry_after, want, "{cell}");
                    }
                }
                _ => unreachable!(),
            }
        }
        seen_table.push_str(&line);
        seen_table.push('\n');
    }
    println!("observed over {transport} (columns: {KEY_STATES:?}):\n{seen_table}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The Markdown table of `docs/fault-matrix.md`, from [`expected`].
fn render_table() -> String {
    let mut out = String::from("| Upstream behaviour |");
    for state in KEY_STATES {
        let _ = write!(out, " {} |", state.label());
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(KEY_STATES.len()));
    out.push('\n');
    for row in rows() {
        let _ = write!(out, "| {} |", row.name);
        for state in KEY_STATES {
            let statuses = MODES.map(|mode| expected(mode, row.class, state));
            let cell = if statuses.iter().all(|s| *s == statuses[0]) {
                statuses[0].to_string()
            } else {
                statuses.map(|s| s.to_string()).join(" / ")
            };
            let cell = match (row.retry_after, statuses.contains(&503)) {
                (Some(after), true) => format!("{cell} (`Retry-After: {after}`)"),
                _ => cell,
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}

#[test]
fn docs_table_matches_the_test() {
    const BEGIN: &str = "<!-- fault-matrix:begin (generated by tests/fault_matrix.rs) -->\n";
    const END: &str = "<!-- fault-matrix:end -->";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/fault-matrix.md");
    let doc = std::fs::read_to_string(&path).expect("docs/fault-matrix.md");
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc.find(END).expect("end marker");
    let table = render_table();
    if std::env::var_os("UPDATE_FAULT_MATRIX").is_some() {
        let updated = format!("{}{table}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        &doc[start..end],
        table,
        "docs/fault-matrix.md is stale: rerun with UPDATE_FAULT_MATRIX=1"
    );
}
