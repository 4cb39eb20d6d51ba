//! The key lifecycle: the [`KeyStore`] contract, its requests and answers, the embedded store
//! and the events that tell caches about revocations.
//!
//! | | |
//! |---|---|
//! | [`KeyStore`] | create, get, list, update, invalidate: one contract for every store |
//! | [`CreateToken`], [`ListTokens`], [`UpdateToken`], [`CreatedToken`], [`TokenPage`] | its requests and answers, with Scalekit's documented limits checked before anything is stored or sent |
//! | [`InMemoryTokens`](crate::InMemoryTokens) | an in-process store with Scalekit's semantics, for development, tests and demos |
//! | [`KeyEvents`] | `Created` / `Revoked` events, published before the call returns (revocation wins in caches) |

mod events;
pub(crate) mod memory;
mod pages;
mod requests;
mod store;

pub use events::{KeyEvent, KeyEventListener, KeyEventSource, KeyEvents};
#[cfg(feature = "scalekit")]
pub(crate) use pages::walk_pages;
pub use pages::{LIST_ALL_DEADLINE, MAX_LISTED_KEYS, MAX_PAGE_TOKEN_LEN, list_all};
pub use requests::{
    CreateToken, CreatedToken, DEFAULT_PAGE_SIZE, LimitError, ListTokens, MAX_CLAIM_NAME_LEN,
    MAX_CLAIM_VALUE_LEN, MAX_CLAIMS, MAX_DESCRIPTION_LEN, MAX_PAGE_SIZE, MAX_USER_ID_LEN,
    TokenPage, UpdateToken, is_user_id,
};
pub use store::{KeyStore, KeyStoreError};

pub use crate::token_info::REVOKE_AFTER_CLAIM;
