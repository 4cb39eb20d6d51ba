//! No configuration value may panic: absurd timeouts are refused at the builder (Scalekit) or
//! clamped (Redis), with the request path still working.

use std::time::Duration;

use axum_api_key::scalekit::{ScalekitClient, ScalekitError};

#[test]
fn absurd_scalekit_timeouts_are_refused_at_the_builder() {
    let builder = || ScalekitClient::builder("https://acme.scalekit.dev", "skc_1", "secret");
    for (name, built) in [
        (
            "validate",
            builder().validate_timeout(Duration::MAX).build(),
        ),
        ("request", builder().request_timeout(Duration::MAX).build()),
        ("token", builder().token_timeout(Duration::MAX).build()),
        ("zero", builder().validate_timeout(Duration::ZERO).build()),
    ] {
        match built {
            Err(ScalekitError::Config(message)) => {
                assert!(message.contains("timeout"), "{name}: {message}")
            }
            other => panic!("{name}: expected a configuration error, got {other:?}"),
        }
    }
    assert!(
        builder()
            .validate_timeout(Duration::from_secs(3600))
            .build()
            .is_ok()
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn absurd_redis_timeouts_are_clamped_and_publishing_does_not_panic() {
    // A port nobody listens on: the publish fails, within the (clamped) deadline, quietly.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let feed = axum_api_key::redis::RedisRevocations::builder(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::MAX)
        .ping_interval(Duration::MAX)
        .backoff(Duration::MAX, Duration::MAX)
        .publish_only()
        .build()
        .unwrap();
    feed.publish_revoked("apit_12345678901234567");
    // The connection is refused at once, so the queue drains (as failed) long before the
    // clamped hour-long timeout; what matters is that nothing panicked on the way.
    let _ = feed.drain(Duration::from_secs(1)).await;
    assert!(!feed.is_connected());
}
