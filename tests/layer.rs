//! The layer over real HTTP on 127.0.0.1: every row of the status-code table, the extractors,
//! optional auth, header removal and the local pre-checks.

mod support;

use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use axum_api_key::keys::CreateToken;
use axum_api_key::request::KeyFormat;
use axum_api_key::{
    ApiKeyLayer, Claims, InMemoryTokens, OrgScope, RequireLayer, TokenInfo, TypedClaims, UserScope,
    ValidateError, validator_fn,
};
use http::HeaderMap;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde::Deserialize;
use serde_json::{Value, json};
use support::{Counting, serve, unknown_key};

struct Fixture {
    base: String,
    tokens: InMemoryTokens,
    counting: Counting<InMemoryTokens>,
    org_key: String,
    user_key: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Deploy {
    environment: String,
}

fn routes() -> Router {
    Router::new()
        .route("/org", get(|OrgScope { organization_id, .. }: OrgScope| async move { organization_id }))
        .route("/user", get(|UserScope { user_id, .. }: UserScope| async move { user_id }))
        .route("/me", get(|info: TokenInfo| async move { axum::Json(info) }))
        .route(
            "/claims",
            get(|claims: Claims| async move { claims.get("environment").unwrap_or("none").to_owned() }),
        )
        .route(
            "/typed",
            get(|TypedClaims(deploy): TypedClaims<Deploy>| async move { deploy.environment }),
        )
        .route(
            "/maybe",
            get(|scope: Option<OrgScope>, user: Option<UserScope>| async move {
                axum::Json(json!({
                    "org": scope.map(|s| s.organization_id),
                    "user": user.map(|u| u.user_id),
                }))
            }),
        )
        .route(
            "/echo-auth",
            get(|headers: HeaderMap| async move { headers.contains_key(AUTHORIZATION).to_string() }),
        )
}

async fn fixture_with(
    configure: impl FnOnce(
        ApiKeyLayer<Counting<InMemoryTokens>>,
    ) -> ApiKeyLayer<Counting<InMemoryTokens>>,
) -> Fixture {
    let tokens = InMemoryTokens::new();
    let org_key = tokens
        .create(CreateToken::new("org_a").claim("environment", "production"))
        .unwrap()
        .key
        .expose_secret()
        .to_owned();
    let user_key = tokens
        .create(
            CreateToken::new("org_a")
                .user("usr_a")
                .claim("environment", "staging"),
        )
        .unwrap()
        .key
        .expose_secret()
        .to_owned();
    let counting = Counting::new(tokens.clone());
    let layer = configure(ApiKeyLayer::new(counting.clone()).realm("test"));
    let base = serve(routes().layer(layer)).await;
    Fixture {
        base,
        tokens,
        counting,
        org_key,
        user_key,
        http: reqwest::Client::new(),
    }
}

async fn fixture() -> Fixture {
    fixture_with(|layer| layer).await
}

impl Fixture {
    async fn get(&self, path: &str, authorization: &[&[u8]]) -> (StatusCode, HeaderMap, String) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for value in authorization {
            request = request.header(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    async fn bearer(&self, path: &str, key: &str) -> (StatusCode, HeaderMap, String) {
        self.get(path, &[format!("Bearer {key}").as_bytes()]).await
    }
}

fn challenge(headers: &HeaderMap) -> &str {
    headers
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn valid_keys_reach_handlers_with_their_scope() {
    let f = fixture().await;
    assert_eq!(f.bearer("/org", &f.org_key).await.2, "org_a");
    assert_eq!(f.bearer("/org", &f.user_key).await.2, "org_a");
    assert_eq!(f.bearer("/user", &f.user_key).await.2, "usr_a");
    assert_eq!(f.bearer("/claims", &f.org_key).await.2, "production");
    assert_eq!(f.bearer("/typed", &f.user_key).await.2, "staging");
    let me: Value = serde_json::from_str(&f.bearer("/me", &f.user_key).await.2).unwrap();
    assert_eq!(me["user_id"], "usr_a");
    assert!(
        !me.to_string().contains(&f.user_key),
        "the key must never be echoed"
    );
    // Scheme is case-insensitive and any number of spaces may follow it.
    let (status, ..) = f
        .get("/org", &[format!("bEARER    {}", f.org_key).as_bytes()])
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn no_credentials_is_401_with_a_bare_challenge() {
    let f = fixture().await;
    for auth in [
        &[][..],
        &[&b"Basic dXNlcjpwYXNz"[..]][..],
        &[&b"Bearerxyz"[..]][..],
    ] {
        let (status, headers, body) = f.get("/org", auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge(&headers), "Bearer realm=\"test\"");
        assert_eq!(error_code(&body), "missing_credentials");
    }
    assert_eq!(f.counting.calls(), 0);
}

#[tokio::test]
async fn malformed_requests_are_400_invalid_request() {
    let f = fixture().await;
    let two = [
        format!("Bearer {}", f.org_key),
        format!("Bearer {}", f.user_key),
    ];
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![two[0].as_bytes(), two[1].as_bytes()],
        vec![two[0].as_bytes(), b"Basic abc"],
        vec![b"Bearer"],
        vec![b"Bearer    "],
    ];
    for auth in cases {
        let (status, headers, body) = f.get("/org", &auth).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{auth:?}");
        assert!(challenge(&headers).contains("error=\"invalid_request\""));
        assert_eq!(error_code(&body), "invalid_request");
    }
    assert_eq!(f.counting.calls(), 0);
}

#[tokio::test]
async fn values_that_cannot_be_keys_never_reach_the_validator() {
    let f = fixture().await;
    let created = f.tokens.create(CreateToken::new("org_a")).unwrap();
    let too_long = "a".repeat(513);
    let cases: Vec<Vec<u8>> = vec![
        format!("Bearer {}", created.token_id).into_bytes(), // a real token id: Scalekit would accept it
        b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl".to_vec(),
        b"Bearer short".to_vec(),
        format!("Bearer {too_long}").into_bytes(),
        b"Bearer abc$def".to_vec(),
        b"Bearer abc def".to_vec(),
        b"Bearer\tabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabc".to_vec(),
        [b"Bearer ".as_slice(), "\u{e9}t\u{e9}".repeat(30).as_bytes()].concat(),
        [b"Bearer ".as_slice(), &[0xff; 70]].concat(),
        b"Bearer sk_live_abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl".to_vec(),
    ];
    let mut bodies = Vec::new();
    for auth in &cases {
        let (status, headers, body) = f.get("/org", &[auth]).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{:?}",
            String::from_utf8_lossy(auth)
        );
        assert!(challenge(&headers).contains("error=\"invalid_token\""));
        bodies.push(body);
    }
    assert_eq!(
        f.counting.calls(),
        0,
        "pre-checks must reject before the validator"
    );
    // A format-valid unknown key does reach it, and gets the very same answer.
    let (status, headers, body) = f.bearer("/org", &unknown_key(1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&headers).contains("error=\"invalid_token\""));
    assert_eq!(f.counting.calls(), 1);
    assert!(bodies.iter().all(|b| *b == body));
}

#[tokio::test]
async fn unknown_revoked_and_expired_keys_get_identical_401s() {
    let f = fixture().await;
    let revoked = f.tokens.create(CreateToken::new("org_a")).unwrap();
    f.tokens.invalidate(&revoked.token_id);
    let expiring = f
        .tokens
        .create(
            CreateToken::new("org_a")
                .expiry(time::OffsetDateTime::now_utc() + Duration::from_millis(300)),
        )
        .unwrap();
    assert_eq!(
        f.bearer("/org", expiring.key.expose_secret()).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(400)).await;

    let unknown = f.bearer("/org", &unknown_key(2)).await;
    let revoked = f.bearer("/org", revoked.key.expose_secret()).await;
    let expired = f.bearer("/org", expiring.key.expose_secret()).await;
    for answer in [&revoked, &expired] {
        assert_eq!(answer.0, unknown.0);
        assert_eq!(answer.2, unknown.2);
        assert_eq!(challenge(&answer.1), challenge(&unknown.1));
    }
    assert_eq!(unknown.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn user_scope_on_an_org_key_is_403() {
    let f = fixture().await;
    let (status, headers, body) = f.bearer("/user", &f.org_key).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge(&headers).contains("error=\"insufficient_scope\""));
    assert_eq!(error_code(&body), "insufficient_scope");
    // Claims that do not fit the typed form: 403 as well.
    let other = f
        .tokens
        .create(CreateToken::new("org_a").claim("team", "x"))
        .unwrap();
    assert_eq!(
        f.bearer("/typed", other.key.expose_secret()).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn an_unavailable_validator_is_503_with_retry_after() {
    let validator = validator_fn(|_key| async {
        Err::<TokenInfo, _>(ValidateError::Unavailable {
            message: "upstream down".into(),
            retry_after: Some(Duration::from_secs(7)),
        })
    });
    let base = serve(routes().layer(ApiKeyLayer::new(validator))).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/org"))
        .bearer_auth(unknown_key(3))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "7");
    assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
    let body = response.text().await.unwrap();
    assert_eq!(error_code(&body), "temporarily_unavailable");
}

#[tokio::test]
async fn an_extractor_without_the_layer_is_a_500_that_names_it() {
    let base = serve(routes()).await;
    for path in ["/org", "/user", "/me", "/claims", "/typed", "/maybe"] {
        let response = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}"
        );
        let body = response.text().await.unwrap();
        assert!(body.contains("ApiKeyLayer"), "{body}");
    }
}

#[tokio::test]
async fn optional_auth_lets_anonymous_requests_through_but_not_bad_keys() {
    let f = fixture_with(ApiKeyLayer::optional).await;
    let (status, _, body) = f.get("/maybe", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"org": null, "user": null})
    );

    let (_, _, body) = f.bearer("/maybe", &f.org_key).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"org": "org_a", "user": null})
    );
    let (_, _, body) = f.bearer("/maybe", &f.user_key).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"org": "org_a", "user": "usr_a"})
    );

    assert_eq!(
        f.bearer("/maybe", &unknown_key(4)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.bearer("/maybe", "apit_12345678901234567").await.0,
        StatusCode::UNAUTHORIZED
    );
    // A required extractor on an optional route: 401 with the challenge, not 500.
    let (status, headers, _) = f.get("/org", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&headers), "Bearer realm=\"test\"");
}

#[tokio::test]
async fn the_authorization_header_is_removed_unless_asked_to_keep_it() {
    let f = fixture().await;
    assert_eq!(f.bearer("/echo-auth", &f.org_key).await.2, "false");
    let f = fixture_with(|layer| layer.strip_authorization(false)).await;
    assert_eq!(f.bearer("/echo-auth", &f.org_key).await.2, "true");
}

#[tokio::test]
async fn rejection_rendering_can_be_replaced_everywhere() {
    let f = fixture_with(|layer| {
        layer.on_rejection(|rejection| {
            (
                rejection.kind().status(),
                format!("custom:{}", rejection.kind().error_code()),
            )
                .into_response()
        })
    })
    .await;
    assert_eq!(f.get("/org", &[]).await.2, "custom:missing_credentials");
    assert_eq!(
        f.bearer("/org", &unknown_key(5)).await.2,
        "custom:invalid_token"
    );
    let (status, _, body) = f.bearer("/user", &f.org_key).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "custom:insufficient_scope")
    );
}

#[tokio::test]
async fn require_layer_guards_route_groups() {
    let tokens = InMemoryTokens::new();
    let prod = tokens
        .create(CreateToken::new("org_a").claim("environment", "production"))
        .unwrap();
    let staging = tokens
        .create(CreateToken::new("org_a").claim("environment", "staging"))
        .unwrap();
    let app = Router::new()
        .route("/deploy", get(|| async { "deploying" }))
        .route_layer(RequireLayer::claim("environment", "production"))
        .layer(ApiKeyLayer::new(tokens));
    let base = serve(app).await;
    let http = reqwest::Client::new();
    let get = |key: String| http.get(format!("{base}/deploy")).bearer_auth(key).send();
    assert_eq!(
        get(prod.key.expose_secret().to_owned())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let refused = get(staging.key.expose_secret().to_owned()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(challenge(refused.headers()).contains("insufficient_scope"));
}

#[tokio::test]
async fn lenient_format_admits_prefixed_keys_for_other_validators() {
    let validator = validator_fn(|key| async move {
        if key.expose_secret() == "sk_live_0123456789abcdef" {
            Ok(TokenInfo::builder("key_1", "org_x").build())
        } else {
            Err(ValidateError::Invalid(
                axum_api_key::validator::InvalidReason::Unknown,
            ))
        }
    });
    let app = routes().layer(ApiKeyLayer::new(validator).key_format(KeyFormat::neutral()));
    let base = serve(app).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/org"))
        .bearer_auth("sk_live_0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "org_x");
}

#[tokio::test]
async fn authenticate_works_outside_a_router() {
    let tokens = InMemoryTokens::new();
    let created = tokens.create(CreateToken::new("org_a")).unwrap();
    let layer = ApiKeyLayer::new(tokens);
    let auth = layer
        .validate_key(created.key.expose_secret())
        .await
        .unwrap();
    assert_eq!(auth.info().token_id(), created.token_id);
    assert!(layer.validate_key(&created.token_id).await.is_err());
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        format!("Bearer {}", created.key.expose_secret())
            .parse()
            .unwrap(),
    );
    assert!(layer.authenticate(&headers).await.unwrap().is_some());
}
