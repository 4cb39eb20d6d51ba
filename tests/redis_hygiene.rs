//! Nothing a publisher puts on the revocation channel reaches the log unvalidated (design rules
//! 2 and 8): malformed messages that carry a real key, a `type` that is a key, an origin with
//! a forged log line in it or kilobytes long. A real `redis-server`, the feed subscribed, every
//! event of every crate captured at TRACE into memory, as in `tests/secret_hygiene.rs`.

mod support;

use std::time::{Duration, Instant};

use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::CreateToken;
use axum_api_key::redis::{RedisRevocations, RedisSetupError};
use axum_api_key::{ApiKey, InMemoryTokens, Validator};
use support::log_capture::{capture_everything, captured};
use support::redis_server::RedisServer;

/// What an attacker (or a careless operator) might paste into a message.
const FORGED: &str = "FORGED-LINE the key is valid";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_publisher_writes_reaches_the_log_unvalidated() {
    capture_everything();
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let tokens = InMemoryTokens::new();
    let created = tokens.create(CreateToken::new("org_1")).unwrap();
    let key = created.key.expose_secret().to_owned();
    let token_id = created.token_id.clone();
    let cache = CachedValidator::new(tokens.clone());
    let channel = format!("hygiene:{}", std::process::id());
    let feed = RedisRevocations::builder(redis.url())
        .channel(&channel)
        .origin("instance-b")
        .build()
        .expect("feed");
    feed.attach(&cache);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !feed.is_connected() {
        assert!(Instant::now() < deadline, "the feed did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The key is cached (a TRACE hit line proves the capture works).
    let api_key = ApiKey::new(key.clone());
    cache.validate(&api_key).await.unwrap();
    cache.validate(&api_key).await.unwrap();

    let at = "2026-01-01T00:00:00Z";
    let long = "x".repeat(3000);
    let malformed = [
        key.clone(),
        format!(r#"{{"v":"{key}","type":"revoked"}}"#),
        format!(r#"{{"v":1,"type":"revoked","token_id":"{key}","at":"{at}"}}"#),
        format!(r#"{{"v":1,"type":"revoked","token_id":["{key}"],"at":"{at}"}}"#),
        format!(r#"{{"v":1,"type":"revoked","token_id":{key},"at":"{at}"}}"#),
        format!(r#"{{"v":1,"type":"revoked","token_id":"apit_1","at":"{key}"}}"#),
        format!(r#"{{"v":1,"type":"revoked","token_id":"apit_1","at":"{at}","origin":{key}}}"#),
        format!(r#"{{"v":1,"type":"revoked","token_id":"apit_1","at":"{at}","origin":7}}"#),
        format!(r#"{{"v":1,"type":"updated","token_id":"{key}","at":"{at}"}}"#),
        format!(r#"{{"v":1,"type":"updated","token_id":"apit_1","at":"{key}"}}"#),
    ];
    let unknown = [
        format!(r#"{{"v":1,"type":"{key}","token_id":"apit_1","at":"{at}"}}"#),
        format!(r#"{{"v":3,"type":"{FORGED}\n{FORGED}","token_id":"apit_1","at":"{at}"}}"#),
    ];
    // Well-formed revocations (of ids no key has) whose origins are hostile: applied, logged
    // with the origin replaced.
    let hostile = [
        format!("evil\\n{FORGED}"),
        format!("evil\\r\\n{FORGED}"),
        key.clone(),
        long.clone(),
        "\\u001b[2J".to_owned(),
    ];
    let raw = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = raw.get_multiplexed_async_connection().await.unwrap();
    let mut publish = async |payload: String| {
        ::redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .unwrap();
    };
    for payload in malformed.iter().chain(&unknown) {
        publish(payload.clone()).await;
    }
    for (i, origin) in hostile.iter().enumerate() {
        publish(format!(
            r#"{{"v":1,"type":"revoked","token_id":"apit_hostile{i}","origin":"{origin}","at":"{at}"}}"#
        ))
        .await;
        // The same origins on updates (of the cached key's own id: forgotten, never refused).
        publish(format!(
            r#"{{"v":1,"type":"updated","token_id":"{token_id}","origin":"{origin}","at":"{at}"}}"#
        ))
        .await;
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = feed.stats();
        if stats.malformed == malformed.len() as u64
            && stats.unknown == unknown.len() as u64
            && stats.events_received == hostile.len() as u64
            && stats.updates_received == hostile.len() as u64
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all messages arrived: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The key was never revoked by any of that.
    assert!(cache.validate(&api_key).await.is_ok());

    let log = captured();
    assert!(log.contains("TRACE"), "the capture works");
    assert!(log.contains("ignored a malformed message"), "{log}");
    assert!(log.contains("does not understand"), "{log}");
    // Paced: ten malformed messages in a row make fewer warnings than messages.
    let warnings = log.matches("ignored a malformed message").count();
    assert!(warnings < malformed.len(), "{warnings} warnings:\n{log}");
    // No piece of the key, no forged line, no kilobyte field.
    for piece in key.as_bytes().windows(16) {
        let piece = std::str::from_utf8(piece).unwrap();
        assert!(
            !log.contains(piece),
            "the log shows part of the key:\n{log}"
        );
    }
    assert!(
        !log.contains(FORGED),
        "a forged line reached the log:\n{log}"
    );
    assert!(
        !log.contains(&long[..100]),
        "a kilobyte field reached the log"
    );
    assert!(
        log.lines().all(|line| line.len() < 1024),
        "a log line is over 1 KiB"
    );
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    assert_eq!(
        log.matches(r#"origin="<invalid>""#).count(),
        2 * hostile.len(),
        "every hostile origin is logged as <invalid>:\n{log}"
    );
}

/// An announcement whose token id every subscriber would drop is refused before the queue,
/// counted, and its value never logged (it may be a key passed by mistake).
#[tokio::test]
async fn an_announcement_that_names_no_token_id_is_refused_and_not_logged() {
    capture_everything();
    let feed = RedisRevocations::builder("redis://127.0.0.1:1")
        .build()
        .expect("feed");
    let key_by_mistake = format!("sk_{}", "Q".repeat(45));
    assert!(!feed.publish_revoked(&key_by_mistake));
    assert!(!feed.publish_updated("two words"));
    assert!(!feed.publish_revoked(""));
    assert_eq!(feed.stats().not_an_id, 3);
    assert!(feed.publish_revoked("apit_2hX9fKq"), "a token id is queued");
    assert_eq!(feed.stats().not_an_id, 3);
    let log = captured();
    assert!(log.contains("not a token id"), "{log}");
    assert!(!log.contains(&key_by_mistake[..20]), "{log}");
}

#[tokio::test]
async fn an_origin_that_could_not_be_logged_is_refused_at_build() {
    for origin in ["", "a b", "line\nbreak", &"o".repeat(49)] {
        assert_eq!(
            RedisRevocations::builder("redis://127.0.0.1:1")
                .origin(origin)
                .build()
                .err(),
            Some(RedisSetupError::InvalidOrigin),
            "{origin:?}"
        );
    }
    for origin in ["host-1", "pod.ns.svc:8080", &"o".repeat(48)] {
        assert!(
            RedisRevocations::builder("redis://127.0.0.1:1")
                .origin(origin)
                .build()
                .is_ok(),
            "{origin:?}"
        );
    }
}
