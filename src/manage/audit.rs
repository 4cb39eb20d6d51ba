//! Audit events: every create, rotate and revoke, with the actor, never the key.

use std::sync::Arc;

use time::OffsetDateTime;

/// What a manager did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditAction {
    /// A key was created.
    Created,
    /// A key was rotated: `successor` replaces it; it is revoked now (`grace_until: None`) or
    /// stops working at `grace_until`.
    Rotated {
        /// The successor's token id.
        successor: String,
        /// When the rotated key stops working, if not at once.
        grace_until: Option<OffsetDateTime>,
    },
    /// A key was revoked.
    Revoked,
}

impl AuditAction {
    /// `created`, `rotated` or `revoked`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Rotated { .. } => "rotated",
            Self::Revoked => "revoked",
        }
    }
}

/// One audited action. Holds ids and the actor's label, never a key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent {
    /// What happened.
    pub action: AuditAction,
    /// The key acted on.
    pub token_id: String,
    /// The key's organization.
    pub organization_id: String,
    /// The key's user, for user-scoped keys.
    pub user_id: Option<String>,
    /// Who did it ([`Manager::actor`](super::Manager::actor)).
    pub actor: String,
    /// When.
    pub at: OffsetDateTime,
}

/// Hears every [`AuditEvent`], after the store has answered and before the HTTP answer is
/// sent. Called on the request's task: keep it quick (hand slow work to a channel).
///
/// ```
/// use axum_api_key::manage::{AuditEvent, AuditListener};
///
/// struct Stdout;
/// impl AuditListener for Stdout {
///     fn on_audit(&self, event: &AuditEvent) {
///         println!("{} {} by {}", event.action.as_str(), event.token_id, event.actor);
///     }
/// }
/// ```
pub trait AuditListener: Send + Sync + 'static {
    /// Handles one event.
    fn on_audit(&self, event: &AuditEvent);
}

/// Logs the event (target `axum_api_key::manage`, level info) and hands it to the listeners.
pub(super) fn emit(listeners: &[Arc<dyn AuditListener>], event: AuditEvent) {
    let grace_until = match &event.action {
        AuditAction::Rotated { grace_until, .. } => *grace_until,
        _ => None,
    };
    let successor = match &event.action {
        AuditAction::Rotated { successor, .. } => Some(successor.as_str()),
        _ => None,
    };
    tracing::info!(
        target: "axum_api_key::manage",
        action = event.action.as_str(),
        token_id = %event.token_id,
        organization_id = %event.organization_id,
        successor,
        grace_until = grace_until.map(|t| t.unix_timestamp()),
        // Debug: quoted and escaped, so an app-supplied label cannot forge log lines.
        actor = ?event.actor,
        "API key {}", event.action.as_str()
    );
    for listener in listeners {
        listener.on_audit(&event);
    }
}
