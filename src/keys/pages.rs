//! Walking every page of a listing, with a bound: a store that repeats a cursor or never ends
//! its chain is an error, never an endless loop.

use std::collections::HashSet;
use std::future::Future;

use super::requests::{ListTokens, TokenPage};
use super::store::{KeyStore, KeyStoreError};
use crate::token_info::TokenInfo;

/// Every key `request` matches, over all pages of `store`, reading at most `max_pages` pages.
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

/// The walk itself, for any page source and error type; `broken` names what went wrong with
/// the chain of cursors.
pub(crate) async fn walk_pages<E, Fut>(
    mut request: ListTokens,
    max_pages: usize,
    mut fetch: impl FnMut(ListTokens) -> Fut,
    broken: impl Fn(String) -> E,
) -> Result<Vec<TokenInfo>, E>
where
    Fut: Future<Output = Result<TokenPage, E>>,
{
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..max_pages {
        let page = fetch(request.clone()).await?;
        all.extend(page.tokens);
        match page.next_page_token {
            None => return Ok(all),
            Some(cursor) if !seen.insert(cursor.clone()) => {
                return Err(broken("the store repeated a page cursor".to_owned()));
            }
            Some(cursor) => request.page_token = Some(cursor),
        }
    }
    Err(broken(format!("more than {max_pages} pages of keys")))
}
