//! The rules, written once for the JSON API and the page: who sees what, what may be minted,
//! how lists are ordered, how rotation and revocation run.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use super::audit::{self, AuditAction, AuditEvent, AuditListener};
use super::error::ManageError;
use super::manager::Manager;
use crate::keys::{
    CreateToken, CreatedToken, KeyStore, KeyStoreError, ListTokens, MAX_CLAIMS, MAX_PAGE_SIZE,
    UpdateToken,
};
use crate::token_info::{REVOKE_AFTER_CLAIM, TokenInfo};

/// Keys per page of the router's own listing, unless asked.
pub const DEFAULT_LIST_SIZE: u32 = 20;
/// At most this many keys per page of the router's listing.
pub const MAX_LIST_SIZE: u32 = 100;
/// The router reads at most this many store pages per listing (30 keys each): the newest-first
/// order covers an organization's (or user's) first 1 020 active keys.
pub const MAX_STORE_PAGES: usize = 34;
/// Longest token id taken from a path.
const MAX_ID_LEN: usize = 64;
/// How many revocations the router remembers, so that a repeated `DELETE` answers 204.
const REVOKED_MEMO: usize = 4096;
/// Keys whose grace deadline passed are invalidated at the store when a listing meets them,
/// at most this many per listing.
pub(super) const SWEEP_PER_LIST: usize = 10;

/// What managers may do, set on [`KeyManagement`](super::KeyManagement).
#[derive(Clone, Debug)]
pub(super) struct Policy {
    pub(super) allowed_claims: Vec<String>,
    pub(super) admin_claim: (String, String),
    pub(super) max_lifetime: Option<Duration>,
    pub(super) max_grace: Duration,
    pub(super) max_keys_per_user: u32,
}

/// A key to create, as a manager asks for it.
#[derive(Clone, Debug, Default)]
pub(super) struct NewKey {
    pub(super) description: Option<String>,
    pub(super) user_id: Option<String>,
    pub(super) custom_claims: BTreeMap<String, String>,
    pub(super) expiry: Option<OffsetDateTime>,
}

/// One page of the newest-first listing.
pub(super) struct KeyPage {
    pub(super) keys: Vec<TokenInfo>,
    pub(super) next_page_token: Option<String>,
    /// `true` when the organization has more keys than one listing reads.
    pub(super) truncated: bool,
}

/// The answer of a rotation.
pub(super) struct Rotated {
    pub(super) successor: CreatedToken,
    pub(super) old_token_id: String,
    pub(super) grace_until: Option<OffsetDateTime>,
}

pub(super) struct Core<S> {
    pub(super) store: S,
    pub(super) policy: Policy,
    pub(super) listeners: Vec<Arc<dyn AuditListener>>,
    revoked: Mutex<RevokedMemo>,
}

/// Recently revoked keys (id -> organization, user), bounded, oldest forgotten first.
#[derive(Default)]
struct RevokedMemo {
    scopes: HashMap<String, (String, Option<String>)>,
    order: VecDeque<String>,
}

impl<S: KeyStore> Core<S> {
    pub(super) fn new(store: S, policy: Policy, listeners: Vec<Arc<dyn AuditListener>>) -> Self {
        Self {
            store,
            policy,
            listeners,
            revoked: Mutex::new(RevokedMemo::default()),
        }
    }

    /// One key `manager` may see.
    pub(super) async fn get(
        &self,
        manager: &Manager,
        token_id: &str,
    ) -> Result<TokenInfo, ManageError> {
        may_manage(manager)?;
        check_id(token_id)?;
        let info = self.store.get(token_id).await?;
        if self.visible(manager, &info) {
            Ok(info)
        } else {
            Err(ManageError::NotFound) // another organization or user: never say it exists
        }
    }

    pub(super) async fn create(
        &self,
        manager: &Manager,
        new: NewKey,
    ) -> Result<CreatedToken, ManageError> {
        may_manage(manager)?;
        let user_id = match (new.user_id.filter(|u| !u.is_empty()), manager.user_id()) {
            (None, _) if manager.is_admin() => None,
            (Some(user), _) if manager.is_admin() => Some(user),
            (None, Some(own)) => Some(own.to_owned()),
            (Some(user), Some(own)) if user == own => Some(user),
            (Some(_), _) => {
                return Err(ManageError::forbidden(
                    "only key admins may create keys for other users",
                ));
            }
            (None, None) => return Err(no_grant()),
        };
        self.check_claims(manager, &new.custom_claims)?;
        let request = CreateToken {
            organization_id: manager.organization_id().to_owned(),
            user_id,
            custom_claims: new.custom_claims,
            expiry: self.expiry(manager, new.expiry, None)?,
            description: new.description.filter(|d| !d.is_empty()),
        };
        request.check()?;
        self.check_key_count(manager).await?;
        let created = self.store.create(request).await?;
        self.audit(manager, &created.info, AuditAction::Created);
        Ok(created)
    }

    pub(super) async fn rotate(
        &self,
        manager: &Manager,
        token_id: &str,
        grace: Duration,
        expiry: Option<OffsetDateTime>,
    ) -> Result<Rotated, ManageError> {
        let old = self.get(manager, token_id).await?;
        if grace > self.policy.max_grace {
            return Err(ManageError::invalid(format!(
                "grace_seconds must be at most {}",
                self.policy.max_grace.as_secs()
            )));
        }
        let (admin_claim, admin_value) = &self.policy.admin_claim;
        if !manager.is_admin() && old.claim(admin_claim) == Some(admin_value.as_str()) {
            // Rotation mints a new credential with the old one's power.
            return Err(ManageError::forbidden(
                "only key admins may rotate a key that carries the key-admin claim",
            ));
        }
        let now = OffsetDateTime::now_utc();
        let grace_until = (!grace.is_zero()).then(|| {
            let deadline = now + grace;
            old.revoke_after()
                .map_or(deadline, |earlier| earlier.min(deadline))
        });
        let mut claims = old.claims_map();
        claims.remove(REVOKE_AFTER_CLAIM);
        if grace_until.is_some() && claims.len() >= MAX_CLAIMS {
            return Err(ManageError::invalid(
                "this key has no room for a grace deadline claim: rotate it without grace",
            ));
        }
        let successor = CreateToken {
            organization_id: old.organization_id().to_owned(),
            user_id: old.user_id().map(str::to_owned),
            custom_claims: claims.clone(),
            // Never outlives its predecessor: rotating renews the secret, not the lifetime.
            expiry: self.expiry(manager, expiry, old.expiry())?,
            description: old.description().map(str::to_owned),
        };
        successor.check()?;
        if !grace.is_zero() {
            // The old key lives on beside its successor for the grace: one more active key.
            self.check_key_count(manager).await?;
        }
        let successor = self.store.create(successor).await?;

        let retired = match grace_until {
            None => self.store.invalidate(old.token_id()).await,
            Some(deadline) => {
                claims.insert(
                    REVOKE_AFTER_CLAIM.to_owned(),
                    deadline.unix_timestamp().to_string(),
                );
                let update = UpdateToken::new(old.token_id().to_owned()).custom_claims(claims);
                self.store.update(update).await.map(drop)
            }
        };
        if let Err(error) = retired {
            // Nothing half-done: the successor goes, the old key stays as it was.
            if let Err(undo) = self.store.invalidate(&successor.token_id).await {
                tracing::error!(
                    target: "axum_api_key::manage",
                    successor = %successor.token_id, error = %undo,
                    "rotation failed and its successor could not be revoked"
                );
            }
            return Err(error.into());
        }
        if grace_until.is_none() {
            self.remember_revoked(&old);
        }
        self.audit(manager, &successor.info, AuditAction::Created);
        self.audit(
            manager,
            &old,
            AuditAction::Rotated {
                successor: successor.token_id.clone(),
                grace_until,
            },
        );
        Ok(Rotated {
            successor,
            old_token_id: old.token_id().to_owned(),
            grace_until,
        })
    }

    /// Revokes a key `manager` may see. Idempotent for keys this router revoked.
    pub(super) async fn revoke(
        &self,
        manager: &Manager,
        token_id: &str,
    ) -> Result<(), ManageError> {
        may_manage(manager)?;
        check_id(token_id)?;
        let info = match self.store.get(token_id).await {
            Ok(info) => info,
            Err(KeyStoreError::NotFound) if self.revoked_by_scope(manager, token_id) => {
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        if !self.visible(manager, &info) {
            return Err(ManageError::NotFound);
        }
        self.store.invalidate(info.token_id()).await?;
        self.remember_revoked(&info);
        self.audit(manager, &info, AuditAction::Revoked);
        Ok(())
    }

    /// Whether `manager` may see `info`: same organization, and admin or the key's own user.
    pub(super) fn visible(&self, manager: &Manager, info: &TokenInfo) -> bool {
        may_see(manager, info.organization_id(), info.user_id())
    }

    fn check_claims(
        &self,
        manager: &Manager,
        claims: &BTreeMap<String, String>,
    ) -> Result<(), ManageError> {
        for name in claims.keys() {
            if name == REVOKE_AFTER_CLAIM {
                return Err(ManageError::invalid(format!(
                    "the claim {REVOKE_AFTER_CLAIM:?} is reserved for rotation"
                )));
            }
            if *name == self.policy.admin_claim.0 {
                if manager.is_admin() {
                    continue;
                }
                return Err(ManageError::forbidden(
                    "only key admins may set the key-admin claim",
                ));
            }
            if !self
                .policy
                .allowed_claims
                .iter()
                .any(|allowed| allowed == name)
            {
                return Err(ManageError::invalid(format!(
                    "custom claim {name:?} is not allowed (allowed: {})",
                    self.policy.allowed_claims.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The expiry of a key `manager` mints: the one asked for, within the cap (the policy's
    /// longest lifetime, the manager's own credential and, for a rotation's successor,
    /// `predecessor`: the rotated key's expiry), or the cap when none is asked.
    pub(super) fn expiry(
        &self,
        manager: &Manager,
        requested: Option<OffsetDateTime>,
        predecessor: Option<OffsetDateTime>,
    ) -> Result<Option<OffsetDateTime>, ManageError> {
        let now = OffsetDateTime::now_utc();
        let cap = [
            self.policy
                .max_lifetime
                .map(|lifetime| saturating_add(now, lifetime)),
            manager.credential_expiry(),
            predecessor,
        ]
        .into_iter()
        .flatten()
        .min();
        match (requested, cap) {
            (Some(expiry), _) if expiry <= now => {
                Err(ManageError::invalid("expiry must be in the future"))
            }
            (Some(expiry), Some(cap)) if expiry > cap => Err(ManageError::invalid(format!(
                "expiry must be at most {} from now, and never later than your own \
                 credential's expiry (or, on rotation, the rotated key's)",
                self.policy.max_lifetime.map_or_else(
                    || "the cap".to_owned(),
                    |d| format!("{} days", d.as_secs() / 86_400)
                )
            ))),
            (Some(expiry), _) => Ok(Some(expiry)),
            (None, cap) => Ok(cap),
        }
    }

    /// Refuses (422) a non-admin manager that holds
    /// [`max_keys_per_user`](super::KeyManagement::max_keys_per_user) active keys already.
    /// Admins are not counted. Reads at most enough store pages to reach the cap (bounded by
    /// [`MAX_STORE_PAGES`]); concurrent requests may pass it by their number.
    async fn check_key_count(&self, manager: &Manager) -> Result<(), ManageError> {
        let cap = self.policy.max_keys_per_user;
        let Some(user) = manager.user_id().filter(|_| !manager.is_admin()) else {
            return Ok(());
        };
        let refused = || {
            ManageError::invalid(format!(
                "you hold {cap} active keys, the most allowed: revoke one first \
                 (or rotate without grace)"
            ))
        };
        if cap == 0 {
            return Err(refused());
        }
        let request = ListTokens::new(manager.organization_id())
            .user(user)
            .page_size(MAX_PAGE_SIZE);
        let now = OffsetDateTime::now_utc();
        let mut active = 0_u32;
        self.each_store_page(request, |tokens| {
            let here = tokens
                .iter()
                .filter(|info| self.visible(manager, info) && !info.is_expired_at(now))
                .count();
            active = active.saturating_add(here.try_into().unwrap_or(u32::MAX));
            if active >= cap {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await?;
        if active >= cap {
            return Err(refused());
        }
        Ok(())
    }

    /// Reads `request`'s store pages in order, handing each page's keys to `visit`, until the
    /// store has no more, `visit` breaks, or [`MAX_STORE_PAGES`] pages are read; `true` when
    /// that bound left pages unread.
    pub(super) async fn each_store_page(
        &self,
        mut request: ListTokens,
        mut visit: impl FnMut(Vec<TokenInfo>) -> ControlFlow<()>,
    ) -> Result<bool, KeyStoreError> {
        for _ in 0..MAX_STORE_PAGES {
            let answer = self.store.list(&request).await?;
            if visit(answer.tokens).is_break() {
                return Ok(false);
            }
            match answer.next_page_token {
                Some(next) if !next.is_empty() => request.page_token = Some(next),
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    fn audit(&self, manager: &Manager, info: &TokenInfo, action: AuditAction) {
        audit::emit(
            &self.listeners,
            AuditEvent {
                action,
                token_id: info.token_id().to_owned(),
                organization_id: info.organization_id().to_owned(),
                user_id: info.user_id().map(str::to_owned),
                actor: manager.actor().to_owned(),
                at: OffsetDateTime::now_utc(),
            },
        );
    }

    fn remember_revoked(&self, info: &TokenInfo) {
        let mut memo = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        if memo
            .scopes
            .insert(
                info.token_id().to_owned(),
                (
                    info.organization_id().to_owned(),
                    info.user_id().map(str::to_owned),
                ),
            )
            .is_none()
        {
            memo.order.push_back(info.token_id().to_owned());
        }
        while memo.order.len() > REVOKED_MEMO {
            if let Some(old) = memo.order.pop_front() {
                memo.scopes.remove(&old);
            }
        }
    }

    fn revoked_by_scope(&self, manager: &Manager, token_id: &str) -> bool {
        let memo = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        memo.scopes
            .get(token_id)
            .is_some_and(|(org, user)| may_see(manager, org, user.as_deref()))
    }
}

/// `at + duration`, or the latest time `time` represents when that is beyond it (a
/// configuration of `Duration::MAX` means "as late as can be", never a panic).
fn saturating_add(at: OffsetDateTime, duration: Duration) -> OffsetDateTime {
    time::Duration::try_from(duration)
        .ok()
        .and_then(|duration| at.checked_add(duration))
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc())
}

/// The scope rule: a key of `manager`'s organization, and `manager` its admin or the key's own
/// user.
fn may_see(manager: &Manager, organization_id: &str, user_id: Option<&str>) -> bool {
    organization_id == manager.organization_id()
        && (manager.is_admin() || (user_id.is_some() && user_id == manager.user_id()))
}

/// 403 for a manager with no grant and no user.
pub(super) fn may_manage(manager: &Manager) -> Result<(), ManageError> {
    if manager.is_admin() || manager.user_id().is_some() {
        Ok(())
    } else {
        Err(no_grant())
    }
}

pub(super) fn no_grant() -> ManageError {
    ManageError::forbidden(
        "this credential may not manage keys: it needs the key-admin grant or a user scope",
    )
}

/// Ids from paths: opaque, but short and plain, or no such key.
fn check_id(token_id: &str) -> Result<(), ManageError> {
    let plain = !token_id.is_empty()
        && token_id.len() <= MAX_ID_LEN
        && token_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(ManageError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_paths_are_plain() {
        assert!(check_id("key_12345678901234567").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a b").is_err());
        assert!(check_id(&"a".repeat(65)).is_err());
    }

    fn core(max_lifetime: Option<Duration>) -> Core<crate::InMemoryTokens> {
        let policy = Policy {
            allowed_claims: Vec::new(),
            admin_claim: ("role".into(), "key_admin".into()),
            max_lifetime,
            max_grace: Duration::from_secs(60),
            max_keys_per_user: 100,
        };
        Core::new(crate::InMemoryTokens::new(), policy, Vec::new())
    }

    #[test]
    fn a_huge_lifetime_saturates_instead_of_panicking() {
        let admin = Manager::admin("org_1", "admin");
        let cap = core(Some(Duration::MAX))
            .expiry(&admin, None, None)
            .unwrap()
            .unwrap();
        assert_eq!(cap, time::PrimitiveDateTime::MAX.assume_utc());
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            saturating_add(now, Duration::from_secs(60)),
            now + Duration::from_secs(60)
        );
    }

    #[test]
    fn a_successor_never_outlives_its_predecessor() {
        let admin = Manager::admin("org_1", "admin");
        let core = core(None);
        let old = OffsetDateTime::now_utc() + time::Duration::hours(1);
        assert_eq!(core.expiry(&admin, None, Some(old)).unwrap(), Some(old));
        assert!(
            core.expiry(&admin, Some(old + time::Duration::SECOND), Some(old))
                .is_err()
        );
        let earlier = old - time::Duration::minutes(1);
        assert_eq!(
            core.expiry(&admin, Some(earlier), Some(old)).unwrap(),
            Some(earlier)
        );
        assert_eq!(core.expiry(&admin, None, None).unwrap(), None);
    }
}
