//! Walking every page of a listing, with bounds on everything a store (or whoever sits between
//! us and it) controls: the number of pages, the total number of keys, the length of each
//! cursor and the time the whole walk takes. Breaking one is an error, never an
//! endless loop or an unbounded pile of memory.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use super::requests::{ListTokens, TokenPage};
use super::store::{KeyStore, KeyStoreError};
use crate::token_info::TokenInfo;

/// [`list_all`] gathers at most this many keys (tens of megabytes of facts); a larger listing is
/// an error (list one user's keys, or page through with [`KeyStore::list`]).
pub const MAX_LISTED_KEYS: usize = 100_000;

/// [`list_all`] refuses a page cursor longer than this many bytes (Scalekit's are a few dozen).
pub const MAX_PAGE_TOKEN_LEN: usize = 1024;

/// [`list_all`] gives up when the whole listing, every page together, takes longer than this.
pub const LIST_ALL_DEADLINE: Duration = Duration::from_secs(300);

/// Every key `request` matches, over all pages of `store`, reading at most `max_pages` pages.
///
/// The walk is bounded whatever the store answers. It is an error (a
/// [`KeyStoreError::Unavailable`] saying which bound broke) when:
///
/// - the store repeats a cursor, or has more than `max_pages` pages;
/// - a cursor is longer than [`MAX_PAGE_TOKEN_LEN`] bytes;
/// - more than [`MAX_LISTED_KEYS`] keys match (however the store pages them);
/// - the walk is still going after [`LIST_ALL_DEADLINE`] (checked between pages: each call is
///   the store's to bound, as the Scalekit client's are by its timeout).
///
/// It needs no particular executor.
///
/// ```
/// use axum_api_key::InMemoryTokens;
/// use axum_api_key::keys::{CreateToken, ListTokens, list_all};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryTokens::new();
/// for _ in 0..3 {
///     store.create(CreateToken::new("org_1")).unwrap();
/// }
/// let all = list_all(&store, ListTokens::new("org_1").page_size(2), 10).await.unwrap();
/// assert_eq!(all.len(), 3);
/// # });
/// ```
pub async fn list_all<S: KeyStore + ?Sized>(
    store: &S,
    request: ListTokens,
    max_pages: usize,
) -> Result<Vec<TokenInfo>, KeyStoreError> {
    walk_pages(
        request,
        max_pages,
        |page| async move { store.list(&page).await },
        KeyStoreError::unavailable,
    )
    .await
}

/// The bounds of one walk.
#[derive(Clone, Copy, Debug)]
struct WalkLimits {
    max_pages: usize,
    max_keys: usize,
    max_cursor_len: usize,
    deadline: Duration,
}

/// The walk itself, for any page source and error type, within the documented bounds;
/// `broken` names what went wrong (the store's error for a malformed answer).
pub(crate) async fn walk_pages<E, Fut>(
    request: ListTokens,
    max_pages: usize,
    fetch: impl FnMut(ListTokens) -> Fut,
    broken: impl Fn(String) -> E,
) -> Result<Vec<TokenInfo>, E>
where
    Fut: Future<Output = Result<TokenPage, E>>,
{
    let limits = WalkLimits {
        max_pages,
        max_keys: MAX_LISTED_KEYS,
        max_cursor_len: MAX_PAGE_TOKEN_LEN,
        deadline: LIST_ALL_DEADLINE,
    };
    walk_pages_within(request, limits, fetch, broken).await
}

async fn walk_pages_within<E, Fut>(
    mut request: ListTokens,
    limits: WalkLimits,
    mut fetch: impl FnMut(ListTokens) -> Fut,
    broken: impl Fn(String) -> E,
) -> Result<Vec<TokenInfo>, E>
where
    Fut: Future<Output = Result<TokenPage, E>>,
{
    let deadline = Instant::now() + limits.deadline;
    let mut all = Vec::new();
    // Hashes of the cursors seen (keyed per walk), not the cursors: loop detection in 8 bytes
    // a page.
    let hasher = RandomState::new();
    let mut seen = HashSet::new();
    for pages in 0..limits.max_pages {
        if pages > 0 && Instant::now() >= deadline {
            return Err(broken(format!(
                "listing every key took longer than {:?} ({pages} pages read)",
                limits.deadline
            )));
        }
        let page = fetch(request.clone()).await?;
        if all.len() + page.tokens.len() > limits.max_keys {
            return Err(broken(format!(
                "more than {} keys match: list one user's keys, or page through them",
                limits.max_keys
            )));
        }
        all.extend(page.tokens);
        match page.next_page_token {
            None => return Ok(all),
            Some(cursor) if cursor.len() > limits.max_cursor_len => {
                return Err(broken(format!(
                    "the store sent a page cursor of {} bytes (at most {} accepted)",
                    cursor.len(),
                    limits.max_cursor_len
                )));
            }
            Some(cursor) if !seen.insert(hasher.hash_one(&cursor)) => {
                return Err(broken("the store repeated a page cursor".to_owned()));
            }
            Some(cursor) => request.page_token = Some(cursor),
        }
    }
    Err(broken(format!(
        "more than {} pages of keys",
        limits.max_pages
    )))
}

#[cfg(test)]
mod tests;
