//! A client cannot tell a revoked key from one that never existed: same status, same headers
//! (but `date`), same body, with and without the cache, through the Scalekit client over the
//! fake. (Nothing here measures time: on a shared machine that would only measure the load.)

mod support;

use std::collections::BTreeMap;

use axum::Router;
use axum::routing::get;
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::CreateToken;
use axum_api_key::testing::FakeScalekit;
use axum_api_key::validator::BoxValidator;
use axum_api_key::{ApiKeyLayer, OrgScope};

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    headers: BTreeMap<String, Vec<String>>,
    body: String,
}

async fn get_with(url: &str, key: &str) -> Seen {
    let response = reqwest::Client::new()
        .get(format!("{url}/whoami"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in response.headers() {
        if name != "date" {
            headers
                .entry(name.to_string())
                .or_default()
                .push(value.to_str().unwrap().to_owned());
        }
    }
    Seen {
        status: response.status().as_u16(),
        headers,
        body: response.text().await.unwrap(),
    }
}

async fn whoami(scope: OrgScope) -> String {
    scope.organization_id
}

#[tokio::test]
async fn unknown_and_revoked_keys_get_identical_answers() {
    for cached in [false, true] {
        let fake = FakeScalekit::start().await;
        let client = fake.client();
        let validator = if cached {
            BoxValidator::new(CachedValidator::new(client.clone()))
        } else {
            BoxValidator::new(client.clone())
        };
        let app = Router::new()
            .route("/whoami", get(whoami))
            .layer(ApiKeyLayer::new(validator));
        let url = support::serve(app).await;

        // Revoked through the crate, after being seen (so cached when the cache is on).
        let through_crate = client
            .create_token(CreateToken::new("org_t"))
            .await
            .unwrap();
        let key = through_crate.key.expose_secret();
        assert_eq!(get_with(&url, key).await.status, 200);
        client
            .invalidate_token(&through_crate.token_id)
            .await
            .unwrap();
        // Revoked elsewhere (Scalekit's dashboard, another instance), never seen here.
        let elsewhere = fake.tokens().create(CreateToken::new("org_t")).unwrap();
        fake.tokens().invalidate(&elsewhere.token_id);

        let unknown = get_with(&url, &support::unknown_key(7)).await;
        assert_eq!(unknown.status, 401, "cached={cached}");
        assert!(unknown.headers.contains_key("www-authenticate"));
        // Twice each: the second answer may come from the cache's negative side or tombstone.
        for round in 0..2 {
            for (what, key) in [
                (
                    "revoked through the crate",
                    through_crate.key.expose_secret(),
                ),
                ("revoked elsewhere", elsewhere.key.expose_secret()),
            ] {
                let seen = get_with(&url, key).await;
                assert_eq!(seen, unknown, "{what}, cached={cached}, round {round}");
            }
            let other_unknown = get_with(&url, &support::unknown_key(8 + round)).await;
            assert_eq!(other_unknown, unknown, "cached={cached}, round {round}");
        }
        // Keys refused locally (a token id, a JWT) answer the same way too.
        for local in ["apit_71234567890123456", "eyJhbGciOi.eyJzdWIi.c2ln"] {
            assert_eq!(get_with(&url, local).await, unknown, "{local}");
        }
    }
}
