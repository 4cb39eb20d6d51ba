//! Key lifecycle events, so caches hear about revocations (and creations and updates) made
//! through the crate.
//!
//! [`InMemoryTokens`](crate::InMemoryTokens) and the Scalekit client publish a [`KeyEvent`] to
//! their [`KeyEvents`] *before* `create` / `update` / `invalidate` return, so a cache
//! subscribed to them evicts a revoked key before the caller can observe the revocation (revoke
//! wins), and drops an updated key's old facts.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::request::key::Fingerprint;

/// Something happened to a key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyEvent {
    /// A key was minted: any negative cache entry for it is now wrong.
    Created {
        /// The new key's fingerprint.
        fingerprint: Fingerprint,
        /// The new key's id.
        token_id: String,
    },
    /// A key was revoked. At least one of the two is known: revocations by id carry no
    /// fingerprint, revocations by key carry the fingerprint and, when known, the id.
    Revoked {
        /// The key's id, when known.
        token_id: Option<String>,
        /// The key's fingerprint, when the revocation named the key itself.
        fingerprint: Option<Fingerprint>,
    },
    /// A key's facts changed (its claims or description; a rotation's grace deadline is a
    /// claim): answers cached for it are stale. The key itself is still valid.
    Updated {
        /// The key's id.
        token_id: String,
    },
}

/// Receives [`KeyEvent`]s. Called synchronously on the publishing task: keep it quick and
/// never block on I/O (hand the event to a channel for anything slow).
pub trait KeyEventListener: Send + Sync + 'static {
    /// Handles one event.
    fn on_event(&self, event: &KeyEvent);
}

/// A list of listeners, shared by clones.
#[derive(Clone, Default)]
pub struct KeyEvents {
    listeners: Arc<RwLock<Vec<Arc<dyn KeyEventListener>>>>,
}

impl KeyEvents {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a listener; it hears every later event.
    pub fn subscribe(&self, listener: Arc<dyn KeyEventListener>) {
        self.listeners
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(listener);
    }

    /// Delivers `event` to every listener, in order, before returning.
    pub fn publish(&self, event: &KeyEvent) {
        let listeners = self
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for listener in listeners {
            listener.on_event(event);
        }
    }
}

impl fmt::Debug for KeyEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("KeyEvents")
            .field("listeners", &count)
            .finish()
    }
}

/// A source of [`KeyEvent`]s: the validators that can also revoke.
pub trait KeyEventSource {
    /// The events of this source.
    fn key_events(&self) -> &KeyEvents;
}
