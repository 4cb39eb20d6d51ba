//! Counters for [`RedisStats`]: relaxed atomics, bumped off the request path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A snapshot of a [`RedisRevocations`](super::RedisRevocations) feed.
///
/// While `connected` is `false`, revocations made on other instances reach this one only
/// through its cache TTL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// The subscription is up.
    pub connected: bool,
    /// Subscriptions established (the first one included).
    pub connects: u64,
    /// Subscriptions lost: each may have missed messages.
    pub gaps: u64,
    /// Times the attached caches dropped their positive entries because a subscription was
    /// (re)established (one per connect): the gap rule at work. Each is also one of the
    /// caches' own [`CacheStats::flushes`](crate::cache::CacheStats::flushes). A connection that
    /// keeps dropping makes this grow ever more slowly: the reconnection backoff starts over
    /// only after a subscription that lasted 30 s.
    pub flushes: u64,
    /// Revocations received from other instances and applied.
    pub events_received: u64,
    /// Updates received from other instances and applied (the key's cached answers dropped).
    pub updates_received: u64,
    /// Announcements published: revocations and updates.
    pub events_published: u64,
    /// Failed attempts to publish (each is retried).
    pub publish_failures: u64,
    /// Announcements not sent because the queue was full.
    pub publish_dropped: u64,
    /// Revocations by key not announced because the key's token id was unknown here.
    pub unresolved: u64,
    /// Messages on the channel that were not valid JSON announcements (ignored).
    pub malformed: u64,
    /// Well-formed messages of an unknown version or type (ignored).
    pub unknown: u64,
    /// Announcements refused before queueing because their token id is not one the
    /// subscribers accept (1 to 40 letters, digits, `_` and `-`), which every instance would
    /// have dropped: revoke by the key's real token id.
    pub not_an_id: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    connected: AtomicBool,
    pub(super) connects: Counter,
    pub(super) gaps: Counter,
    pub(super) flushes: Counter,
    pub(super) events_received: Counter,
    pub(super) updates_received: Counter,
    pub(super) events_published: Counter,
    pub(super) publish_failures: Counter,
    pub(super) publish_dropped: Counter,
    pub(super) unresolved: Counter,
    pub(super) malformed: Counter,
    pub(super) unknown: Counter,
    pub(super) not_an_id: Counter,
}

impl Counters {
    pub(super) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(super) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
    }

    pub(super) fn snapshot(&self) -> RedisStats {
        RedisStats {
            connected: self.is_connected(),
            connects: self.connects.get(),
            gaps: self.gaps.get(),
            flushes: self.flushes.get(),
            events_received: self.events_received.get(),
            updates_received: self.updates_received.get(),
            events_published: self.events_published.get(),
            publish_failures: self.publish_failures.get(),
            publish_dropped: self.publish_dropped.get(),
            unresolved: self.unresolved.get(),
            malformed: self.malformed.get(),
            unknown: self.unknown.get(),
            not_an_id: self.not_an_id.get(),
        }
    }
}

#[derive(Default)]
pub(super) struct Counter(AtomicU64);

impl Counter {
    pub(super) fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
