//! [`InMemoryTokens`]: Scalekit's key lifecycle in-process, for development, tests and demos.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use time::OffsetDateTime;

use super::events::{KeyEvent, KeyEventSource, KeyEvents};
use super::requests::{CreateToken, CreatedToken, ListTokens, TokenPage, UpdateToken};
use super::store::{KeyStore, KeyStoreError};
use crate::request::key::{ApiKey, Fingerprint, KeyFormat};
use crate::scalekit::shape;
use crate::token_info::{Authenticated, TokenInfo};
use crate::validator::contract::{InvalidReason, ValidateError, Validator};

/// Length of minted keys: a Branca token with a 12-byte payload is 77 Base62 characters.
const KEY_LEN: usize = 77;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An in-process key store with Scalekit's semantics.
///
/// Keys and ids look like Scalekit's (77 Base62 characters; see `scalekit::shape`); the plain key is
/// returned once, by [`create`](Self::create), and stored only as a keyed hash. Validation
/// accepts a key or, as Scalekit's does, a token id ([`validate_token`](Self::validate_token));
/// the [`Validator`] impl is what the layer uses, and sees keys only. Revocation is immediate
/// and idempotent. Clones share the store.
///
/// ```
/// use axum_api_key::InMemoryTokens;
/// use axum_api_key::keys::CreateToken;
///
/// let tokens = InMemoryTokens::new();
/// let created = tokens.create(CreateToken::new("org_demo").claim("env", "prod")).unwrap();
/// let info = tokens.validate_token(created.key.expose_secret()).unwrap();
/// assert_eq!(info.organization_id(), "org_demo");
///
/// tokens.invalidate(&created.token_id);
/// assert!(tokens.validate_token(created.key.expose_secret()).is_err());
/// ```
#[derive(Clone)]
pub struct InMemoryTokens {
    inner: Arc<Inner>,
}

struct Inner {
    state: RwLock<State>,
    /// The store's own hash key: the stored hashes are useless without it.
    hash_key: [u8; 32],
    events: KeyEvents,
}

#[derive(Default)]
struct State {
    records: HashMap<String, Record>,
    by_hash: HashMap<[u8; 32], String>,
    next_seq: u64,
}

struct Record {
    info: TokenInfo,
    seq: u64,
    active: bool,
}

impl Default for InMemoryTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InMemoryTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryTokens")
            .field("keys", &self.read().records.len())
            .finish()
    }
}

impl InMemoryTokens {
    /// An empty store.
    pub fn new() -> Self {
        let mut hash_key = [0u8; 32];
        rand::fill(&mut hash_key);
        Self {
            inner: Arc::new(Inner {
                state: RwLock::new(State::default()),
                hash_key,
                events: KeyEvents::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn hash(&self, key: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.inner.hash_key, key.as_bytes()).as_bytes()
    }

    /// Mints a key. The plain key is in the answer and nowhere else.
    pub fn create(&self, request: CreateToken) -> Result<CreatedToken, KeyStoreError> {
        request.check()?;
        let key = random_key();
        let (token_id, info) = {
            let mut state = self.write();
            let token_id = loop {
                let candidate = shape::new_token_id();
                if !state.records.contains_key(&candidate) {
                    break candidate;
                }
            };
            let info = request.info(token_id.clone(), &key);
            let seq = state.next_seq;
            state.next_seq += 1;
            state
                .by_hash
                .insert(self.hash(key.expose_secret()), token_id.clone());
            state.records.insert(
                token_id.clone(),
                Record {
                    info: info.clone(),
                    seq,
                    active: true,
                },
            );
            (token_id, info)
        };
        self.inner.events.publish(&KeyEvent::Created {
            fingerprint: key.fingerprint(),
            token_id: token_id.clone(),
        });
        Ok(CreatedToken::new(key, token_id, info))
    }

    /// Validates a key **or a token id**, as Scalekit's validate call does. Layers use the
    /// [`Validator`] impl, which never sees token ids.
    pub fn validate_token(&self, token: &str) -> Result<TokenInfo, KeyStoreError> {
        self.lookup(token).map_err(|_| KeyStoreError::NotFound)
    }

    fn lookup(&self, token: &str) -> Result<TokenInfo, InvalidReason> {
        let state = self.read();
        let record = state
            .record(token, |key| self.hash(key))
            .ok_or(InvalidReason::Unknown)?;
        record.check_usable(OffsetDateTime::now_utc())?;
        Ok(record.info.clone())
    }

    /// The facts of an active key, by id only (never by key).
    pub fn get_by_id(&self, token_id: &str) -> Result<TokenInfo, KeyStoreError> {
        let state = self.read();
        let record = state.records.get(token_id).ok_or(KeyStoreError::NotFound)?;
        record
            .check_usable(OffsetDateTime::now_utc())
            .map_err(|_| KeyStoreError::NotFound)?;
        Ok(record.info.clone())
    }

    /// Lists the active (not revoked, not expired) keys of an organization, oldest first.
    pub fn list(&self, request: &ListTokens) -> Result<TokenPage, KeyStoreError> {
        request.check()?;
        let offset: usize = match request.page_token.as_deref() {
            None | Some("") => 0,
            Some(token) => token
                .strip_prefix("o")
                .and_then(|n| n.parse().ok())
                .ok_or(KeyStoreError::BadPageToken)?,
        };
        let now = OffsetDateTime::now_utc();
        let state = self.read();
        let mut matching: Vec<&Record> = state
            .records
            .values()
            .filter(|r| r.active && !r.info.is_expired_at(now))
            .filter(|r| r.info.organization_id() == request.organization_id)
            .filter(|r| request.user_id.is_none() || r.info.user_id() == request.user_id.as_deref())
            .collect();
        matching.sort_by_key(|r| r.seq);
        let size = request.effective_page_size() as usize;
        let total = matching.len();
        let tokens = matching
            .iter()
            .skip(offset)
            .take(size)
            .map(|r| r.info.clone())
            .collect();
        // Saturating: a page token is client input, and "o18446744073709551615" must not
        // overflow (it simply names a page past the end).
        let next_offset = offset.saturating_add(size);
        let next = (next_offset < total).then(|| format!("o{next_offset}"));
        let prev = (offset > 0).then(|| format!("o{}", offset.saturating_sub(size)));
        Ok(TokenPage::new(
            tokens,
            u32::try_from(total).unwrap_or(u32::MAX),
            next,
            prev,
        ))
    }

    /// Changes the description and/or the claims of an active key (by key or token id).
    /// Listeners hear [`KeyEvent::Updated`] before this returns.
    pub fn update(&self, request: UpdateToken) -> Result<TokenInfo, KeyStoreError> {
        request.check()?;
        let updated = {
            let mut state = self.write();
            let id = state
                .id_of(&request.token, |key| self.hash(key))
                .ok_or(KeyStoreError::NotFound)?;
            let now = OffsetDateTime::now_utc();
            let record = state.records.get_mut(&id).ok_or(KeyStoreError::NotFound)?;
            if !record.active || record.info.is_expired_at(now) {
                return Err(KeyStoreError::NotFound);
            }
            let mut changed = record.info.to_builder();
            if let Some(description) = request.description {
                changed = changed.set_description((!description.is_empty()).then_some(description));
            }
            if let Some(claims) = request.custom_claims {
                changed = changed.claims(claims);
            }
            record.info = changed.build();
            record.info.clone()
        };
        // Outside the lock: listeners run synchronously and may read the store.
        self.inner.events.publish(&KeyEvent::Updated {
            token_id: updated.token_id().to_owned(),
        });
        Ok(updated)
    }

    /// Revokes a key (by key or token id). Idempotent: an unknown or already revoked key is
    /// success. Listeners hear of it before this returns.
    pub fn invalidate(&self, token: &str) {
        let token_id = {
            let mut state = self.write();
            let id = state.id_of(token, |key| self.hash(key));
            if let Some(record) = id.as_ref().and_then(|id| state.records.get_mut(id)) {
                record.active = false;
            }
            id
        };
        let fingerprint = (!shape::is_token_id(token)).then(|| Fingerprint::of(token));
        if token_id.is_some() || fingerprint.is_some() {
            self.inner.events.publish(&KeyEvent::Revoked {
                token_id,
                fingerprint,
            });
        }
    }

    /// How many keys the store holds, revoked ones included.
    pub fn len(&self) -> usize {
        self.read().records.len()
    }

    /// `true` when the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Record {
    /// Whether the key may authenticate at `now`, and why not.
    fn check_usable(&self, now: OffsetDateTime) -> Result<(), InvalidReason> {
        if !self.active {
            Err(InvalidReason::Revoked)
        } else if self.info.is_expired_at(now) {
            Err(InvalidReason::Expired)
        } else {
            Ok(())
        }
    }
}

impl State {
    fn id_of(&self, token: &str, hash: impl Fn(&str) -> [u8; 32]) -> Option<String> {
        if shape::is_token_id(token) {
            self.records.contains_key(token).then(|| token.to_owned())
        } else {
            self.by_hash.get(&hash(token)).cloned()
        }
    }

    fn record(&self, token: &str, hash: impl Fn(&str) -> [u8; 32]) -> Option<&Record> {
        if shape::is_token_id(token) {
            self.records.get(token)
        } else {
            self.by_hash
                .get(&hash(token))
                .and_then(|id| self.records.get(id))
        }
    }
}

impl InMemoryTokens {
    /// The [`Validator`] answer for a key. Looked up by the key's hash only, never as a token
    /// id: ids are public (logs, lists, events), so a token id presented as a key is
    /// unknown here even when called outside the layer, which refuses them first anyway.
    fn answer(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        let hash = self.hash(key.expose_secret());
        let state = self.read();
        let record = state
            .by_hash
            .get(&hash)
            .and_then(|id| state.records.get(id))
            .ok_or(ValidateError::Invalid(InvalidReason::Unknown))?;
        record
            .check_usable(OffsetDateTime::now_utc())
            .map(|()| Authenticated::new(record.info.clone()))
            .map_err(ValidateError::Invalid)
    }
}

impl KeyEventSource for InMemoryTokens {
    fn key_events(&self) -> &KeyEvents {
        &self.inner.events
    }
}

impl Validator for InMemoryTokens {
    async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        self.answer(key)
    }

    /// The store never waits: every answer is immediate.
    fn validate_now(&self, key: &ApiKey) -> Option<Result<Authenticated, ValidateError>> {
        Some(self.answer(key))
    }

    /// Scalekit's shape, which this store emulates: its token ids are refused as keys.
    fn key_format(&self) -> KeyFormat {
        shape::key_format()
    }
}

/// The same operations as the inherent methods (which answer at once), behind the common
/// contract.
impl KeyStore for InMemoryTokens {
    async fn create(&self, request: CreateToken) -> Result<CreatedToken, KeyStoreError> {
        InMemoryTokens::create(self, request)
    }

    async fn get(&self, token_id: &str) -> Result<TokenInfo, KeyStoreError> {
        self.get_by_id(token_id)
    }

    async fn list(&self, request: &ListTokens) -> Result<TokenPage, KeyStoreError> {
        InMemoryTokens::list(self, request)
    }

    async fn update(&self, request: UpdateToken) -> Result<TokenInfo, KeyStoreError> {
        InMemoryTokens::update(self, request)
    }

    async fn invalidate(&self, key_or_id: &str) -> Result<(), KeyStoreError> {
        InMemoryTokens::invalidate(self, key_or_id);
        Ok(())
    }
}

fn random_key() -> ApiKey {
    let mut key = String::with_capacity(KEY_LEN);
    for _ in 0..KEY_LEN {
        key.push(char::from(BASE62[rand::random_range(0..BASE62.len())]));
    }
    ApiKey::new(key)
}

#[cfg(test)]
mod tests;
