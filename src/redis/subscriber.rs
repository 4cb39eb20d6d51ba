//! The subscriber task: keeps one subscription to the channel up, applies what arrives, and
//! flushes the attached caches whenever a subscription (re)starts. The reconnection backoff
//! starts over only after a subscription that lasted [`STABLE_SESSION`], so a connection
//! that drops right after each `SUBSCRIBE` costs ever fewer flushes, not one per `min_backoff`.
//!
//! A dedicated pub/sub connection driven by this loop, rather than `redis`'s
//! `ConnectionManager` with automatic resubscription: here a gap has exactly one shape (the
//! message stream ends, or a `PING` goes unanswered), and "subscribed again" is the moment the
//! server confirms `SUBSCRIBE`, which is when the flush must happen. Flushing *after* the
//! confirmation leaves no window in which a message could be missed by both the old and the
//! new cache contents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::time::{MissedTickBehavior, interval, timeout};

use super::Shared;
use super::event::{Kind, Rejected, RevocationMessage, loggable_origin};

pub(super) async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(shared.min_backoff, shared.max_backoff);
    // Log a failing Redis once per outage, not once per attempt.
    let mut failing = false;
    loop {
        match subscribe(&shared).await {
            Ok((sink, stream)) => {
                shared.counters.set_connected(true);
                crate::telemetry::redis_connected(true);
                shared.counters.connects.bump();
                // Subscribed: anything cached before now was vetted without a feed.
                for cache in shared.caches() {
                    cache.flush_positive();
                }
                shared.counters.flushes.bump();
                tracing::info!(
                    redis = "subscribe",
                    channel = %shared.channel,
                    "revocation feed up: positive cache entries flushed; revocations from other instances now arrive within one network hop"
                );
                failing = false;
                let session = Instant::now();
                let why = listen(&shared, sink, stream).await;
                // Only a session that lasted earns a quick reconnect: a server (or proxy) that
                // drops every connection right after SUBSCRIBE would otherwise have every cache
                // flushed every `min_backoff`, the cache then effectively off.
                backoff.session_ended(session.elapsed());
                shared.counters.set_connected(false);
                crate::telemetry::redis_connected(false);
                shared.counters.gaps.bump();
                tracing::warn!(
                    redis = "subscribe",
                    channel = %shared.channel,
                    reason = %why,
                    "revocation feed lost: serving from the local cache; revocations made on other instances are honoured within the cache TTL until it is back"
                );
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(redis = "subscribe", channel = %shared.channel, %error, "cannot subscribe to the revocation feed; retrying with backoff (staleness bound: the cache TTL)");
            }
            Err(error) => {
                tracing::debug!(redis = "subscribe", %error, "still cannot subscribe");
            }
        }
        tokio::time::sleep(backoff.next()).await;
    }
}

async fn subscribe(
    shared: &Shared,
) -> Result<(::redis::aio::PubSubSink, ::redis::aio::PubSubStream), String> {
    let connect = async {
        let mut pubsub = shared.client.get_async_pubsub().await?;
        pubsub.subscribe(&shared.channel).await?;
        Ok::<_, ::redis::RedisError>(pubsub.split())
    };
    match timeout(shared.timeout, connect).await {
        Ok(Ok(split)) => Ok(split),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {:?}", shared.timeout)),
    }
}

/// Applies messages until the subscription dies; says why it did.
async fn listen(
    shared: &Shared,
    mut sink: ::redis::aio::PubSubSink,
    mut stream: ::redis::aio::PubSubStream,
) -> String {
    let mut ping = interval(shared.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => apply(shared, message.get_payload_bytes()),
                None => return "connection closed".into(),
            },
            _ = ping.tick() => {
                match timeout(shared.timeout, sink.ping::<::redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return format!("ping failed: {error}"),
                    Err(_) => return format!("no ping answer within {:?}", shared.timeout),
                }
            }
        }
    }
}

/// One message: revoke its token id everywhere (or forget its facts, for an update), or count
/// and ignore it. Never panics; never logs the payload (whoever publishes garbage may publish a
/// secret): only what was validated and bounded (a token id, a plain origin) or written here
/// (a rejection's category and place).
fn apply(shared: &Shared, payload: &[u8]) {
    match RevocationMessage::decode_any(payload) {
        Ok((_, message)) if message.origin == shared.origin => {
            // Our own announcement: applied locally before it was sent.
        }
        Ok((kind, message)) => {
            let lag_ms = (time::OffsetDateTime::now_utc() - message.at).whole_milliseconds();
            let lag_ms = i64::try_from(lag_ms).unwrap_or(i64::MAX);
            let origin = loggable_origin(&message.origin);
            let token_id = message.token_id.as_str();
            match kind {
                Kind::Revoked => {
                    shared.counters.events_received.bump();
                    for cache in shared.caches() {
                        cache.revoke_token_id(token_id);
                    }
                    tracing::info!(
                        redis = "event",
                        token_id,
                        origin,
                        lag_ms,
                        "API key revoked on another instance: evicted here"
                    );
                }
                Kind::Updated => {
                    shared.counters.updates_received.bump();
                    for cache in shared.caches() {
                        cache.forget_facts(token_id);
                    }
                    tracing::info!(
                        redis = "event",
                        token_id,
                        origin,
                        lag_ms,
                        "API key updated on another instance: its cached answers dropped here"
                    );
                }
            }
        }
        Err(rejected @ Rejected::Malformed(_)) => {
            shared.counters.malformed.bump();
            if shared.malformed_warnings.check().is_ok() {
                tracing::warn!(redis = "event", channel = %shared.channel, len = payload.len(), error = %rejected, "ignored a malformed message (warned about once a second; RedisStats::malformed counts them all)");
            }
        }
        Err(rejected @ Rejected::Unknown { .. }) => {
            shared.counters.unknown.bump();
            if shared.unknown_warnings.check().is_ok() {
                tracing::warn!(redis = "event", channel = %shared.channel, error = %rejected, "ignored a message this version does not understand (warned about once a second; RedisStats::unknown counts them all)");
            }
        }
    }
}

/// How long a subscription must have lasted for its loss to reset the backoff: a flapping
/// connection keeps backing off (and flushing ever less often) instead of flushing the caches
/// every `min_backoff`.
pub(super) const STABLE_SESSION: Duration = Duration::from_secs(30);

/// Exponential backoff with jitter (half to full of the current step), so instances that lost
/// Redis together do not reconnect in lockstep.
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            step: min,
        }
    }

    pub(super) fn reset(&mut self) {
        self.step = self.min;
    }

    /// A subscription that lasted `lasted` ended: the backoff starts over only if it was
    /// stable ([`STABLE_SESSION`]); otherwise it keeps growing.
    pub(super) fn session_ended(&mut self, lasted: Duration) {
        if lasted >= STABLE_SESSION {
            self.reset();
        }
    }

    pub(super) fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        step.mul_f64(rand::random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let steps: Vec<Duration> = (0..5).map(|_| backoff.next()).collect();
        for (step, cap) in steps.iter().zip([100, 200, 400, 400, 400]) {
            assert!(*step <= Duration::from_millis(cap), "{steps:?}");
            assert!(*step >= Duration::from_millis(cap / 2), "{steps:?}");
        }
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(100));
    }

    #[test]
    fn only_a_stable_session_resets_the_backoff() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..4 {
            backoff.next();
        }
        // 100, 200, 400, 800 spent: the next step is 1.6 s, half of it at least with jitter.
        backoff.session_ended(Duration::from_millis(50));
        assert!(
            backoff.next() >= Duration::from_millis(800),
            "a short session kept it"
        );
        backoff.session_ended(STABLE_SESSION - Duration::from_millis(1));
        assert!(backoff.next() >= Duration::from_millis(1600));
        backoff.session_ended(STABLE_SESSION);
        assert!(
            backoff.next() <= Duration::from_millis(100),
            "a stable one resets it"
        );
    }
}
