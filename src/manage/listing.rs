//! Listing: a manager's keys, newest first, paged with an opaque cursor, expired keys swept.

use std::ops::ControlFlow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use super::error::ManageError;
use super::manager::Manager;
use crate::keys::{KeyStore, ListTokens, MAX_PAGE_SIZE};
use crate::token_info::TokenInfo;

use super::ops::{
    Core, DEFAULT_LIST_SIZE, KeyPage, MAX_LIST_SIZE, SWEEP_PER_LIST, may_manage, no_grant,
};

impl<S: KeyStore> Core<S> {
    /// The newest-first listing of what `manager` may see.
    pub(super) async fn list(
        &self,
        manager: &Manager,
        user_filter: Option<&str>,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<KeyPage, ManageError> {
        may_manage(manager)?;
        let size = match page_size {
            None | Some(0) => DEFAULT_LIST_SIZE,
            Some(size) if size > MAX_LIST_SIZE => {
                return Err(ManageError::invalid(format!(
                    "page_size must be at most {MAX_LIST_SIZE}"
                )));
            }
            Some(size) => size,
        } as usize;
        let cursor = page_token
            .filter(|t| !t.is_empty())
            .map(Cursor::decode)
            .transpose()?;
        let mut request = ListTokens::new(manager.organization_id()).page_size(MAX_PAGE_SIZE);
        match (manager.is_admin(), manager.user_id(), user_filter) {
            (true, _, Some(user)) if !user.is_empty() => request = request.user(user),
            (true, _, _) => {}
            (false, Some(own), _) => request = request.user(own),
            (false, None, _) => return Err(no_grant()),
        }

        let now = OffsetDateTime::now_utc();
        let mut keys = Vec::new();
        let mut expired = Vec::new();
        let truncated = self
            .each_store_page(request, |tokens| {
                for info in tokens {
                    if !self.visible(manager, &info) {
                        continue; // a store answering outside the filter: never shown
                    }
                    if info.is_expired_at(now) {
                        if info.revoke_after().is_some_and(|t| t <= now) {
                            expired.push(info.token_id().to_owned());
                        }
                    } else {
                        keys.push(info);
                    }
                }
                ControlFlow::Continue(())
            })
            .await?;
        if truncated {
            tracing::warn!(
                target: "axum_api_key::manage",
                organization_id = manager.organization_id(),
                "listing truncated: more active keys than one listing reads"
            );
        }
        self.sweep(expired).await;

        keys.sort_by(|a, b| position(b).cmp(&position(a)));
        let start = match &cursor {
            Some(cursor) => keys.partition_point(|info| position(info) >= cursor.position()),
            None => 0,
        };
        let rest = keys.len().saturating_sub(start);
        let keys: Vec<TokenInfo> = keys.into_iter().skip(start).take(size).collect();
        let next_page_token = (rest > size)
            .then(|| keys.last().map(|last| Cursor::of(last).encode()))
            .flatten();
        Ok(KeyPage {
            keys,
            next_page_token,
            truncated,
        })
    }

    /// Grace deadlines that passed: the validators refuse those keys already; this revokes
    /// them at the store too, so that the store's own view agrees.
    async fn sweep(&self, expired: Vec<String>) {
        for token_id in expired.into_iter().take(SWEEP_PER_LIST) {
            match self.store.invalidate(&token_id).await {
                Ok(()) => tracing::info!(
                    target: "axum_api_key::manage",
                    %token_id,
                    "rotated key revoked at the end of its grace"
                ),
                Err(error) => tracing::warn!(
                    target: "axum_api_key::manage",
                    %token_id, %error,
                    "could not revoke a rotated key at the end of its grace"
                ),
            }
        }
    }
}

/// A position in the newest-first order: (creation time, token id), compared descending.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cursor {
    created_nanos: i128,
    token_id: String,
}

/// A key's place in the order, borrowed (sorting compares it often; no copy of the id).
fn position(info: &TokenInfo) -> (i128, &str) {
    let created_nanos = info
        .created_at()
        .map_or(i128::MIN, OffsetDateTime::unix_timestamp_nanos);
    (created_nanos, info.token_id())
}

impl Cursor {
    fn of(info: &TokenInfo) -> Self {
        let (created_nanos, token_id) = position(info);
        Self {
            created_nanos,
            token_id: token_id.to_owned(),
        }
    }

    fn position(&self) -> (i128, &str) {
        (self.created_nanos, &self.token_id)
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}~{}", self.created_nanos, self.token_id))
    }

    fn decode(token: &str) -> Result<Self, ManageError> {
        let bad = || ManageError::BadRequest("invalid page_token".into());
        if token.len() > 200 {
            return Err(bad());
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (nanos, id) = raw.split_once('~').ok_or_else(bad)?;
        Ok(Self {
            created_nanos: nanos.parse().map_err(|_| bad())?,
            token_id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            created_nanos: 1_700_000_000_123_456_789,
            token_id: "key_1".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert!(Cursor::decode("!!!").is_err());
        assert!(Cursor::decode(&"A".repeat(500)).is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("x~y")).is_err());
    }
}
