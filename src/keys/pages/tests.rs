//! Unit tests of `pages`: hostile stores get a clear error after bounded work.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::InMemoryTokens;
use crate::keys::{CreateToken, CreatedToken, MAX_PAGE_SIZE, UpdateToken};

/// A store whose `list` answers `page(request, call number)`, counting its calls.
struct Hostile {
    page: fn(&ListTokens, usize) -> TokenPage,
    calls: AtomicUsize,
}

impl Hostile {
    fn new(page: fn(&ListTokens, usize) -> TokenPage) -> Self {
        Self {
            page,
            calls: AtomicUsize::new(0),
        }
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl KeyStore for Hostile {
    async fn create(&self, _: CreateToken) -> Result<CreatedToken, KeyStoreError> {
        Err(KeyStoreError::unavailable("not in this test"))
    }
    async fn get(&self, _: &str) -> Result<TokenInfo, KeyStoreError> {
        Err(KeyStoreError::NotFound)
    }
    async fn list(&self, request: &ListTokens) -> Result<TokenPage, KeyStoreError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok((self.page)(request, call))
    }
    async fn update(&self, _: UpdateToken) -> Result<TokenInfo, KeyStoreError> {
        Err(KeyStoreError::NotFound)
    }
    async fn invalidate(&self, _: &str) -> Result<(), KeyStoreError> {
        Ok(())
    }
}

fn keys(n: usize, call: usize) -> Vec<TokenInfo> {
    (0..n)
        .map(|i| TokenInfo::builder(format!("apit_{call}_{i}"), "org_1").build())
        .collect()
}

fn page(tokens: Vec<TokenInfo>, next: Option<String>) -> TokenPage {
    TokenPage::new(tokens, 0, next, None)
}

/// The message of an `Unavailable` error (what `list_all` answers for a broken walk).
fn message(error: KeyStoreError) -> String {
    match error {
        KeyStoreError::Unavailable { message, .. } => message.into_owned(),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn pages_of_any_size_are_held_to_the_total_cap() {
    rt().block_on(async {
        // A store that ignores the page size (everything on one page) is listed whole.
        let store = Hostile::new(|_, call| page(keys(1_000, call), None));
        let all = list_all(&store, ListTokens::new("org_1").page_size(10), 10)
            .await
            .unwrap();
        assert_eq!(all.len(), 1_000);

        // One page over the cap: refused before it joins the rest.
        let store = Hostile::new(|_, call| page(keys(MAX_LISTED_KEYS + 1, call), None));
        let error = list_all(&store, ListTokens::new("org_1"), 10)
            .await
            .unwrap_err();
        assert_eq!(
            message(error),
            format!(
                "more than {MAX_LISTED_KEYS} keys match: list one user's keys, or page through them"
            )
        );
    });
}

/// The walk needs no timer: it runs on a runtime without one (a Tokio timer used to panic
/// there).
#[test]
fn a_walk_needs_no_timer() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = InMemoryTokens::new();
        for _ in 0..3 {
            store.create(CreateToken::new("org_1")).unwrap();
        }
        let all = list_all(&store, ListTokens::new("org_1").page_size(2), 10)
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
    });
}

#[test]
fn endless_distinct_cursors_stop_at_the_key_cap() {
    rt().block_on(async {
        // Full pages, a new cursor each time: the total of keys ends the walk long before
        // the page limit.
        let store = Hostile::new(|request, call| {
            let size = request.effective_page_size() as usize;
            page(keys(size, call), Some(format!("c{call}")))
        });
        let request = ListTokens::new("org_1").page_size(MAX_PAGE_SIZE);
        let error = list_all(&store, request, usize::MAX).await.unwrap_err();
        assert_eq!(
            message(error),
            format!(
                "more than {MAX_LISTED_KEYS} keys match: list one user's keys, or page through them"
            )
        );
        assert_eq!(store.calls(), MAX_LISTED_KEYS / MAX_PAGE_SIZE as usize + 1);
    });
}

#[test]
fn endless_empty_pages_stop_at_the_page_cap() {
    rt().block_on(async {
        let store = Hostile::new(|_, call| page(Vec::new(), Some(format!("c{call}"))));
        let error = list_all(&store, ListTokens::new("org_1"), 500)
            .await
            .unwrap_err();
        assert_eq!(message(error), "more than 500 pages of keys");
        assert_eq!(store.calls(), 500);
    });
}

#[test]
fn a_huge_cursor_is_refused_before_it_is_sent_or_kept() {
    rt().block_on(async {
        let store = Hostile::new(|request, call| {
            assert!(request.page_token.is_none(), "the huge cursor was sent");
            page(keys(1, call), Some("x".repeat(1024 * 1024)))
        });
        let error = list_all(&store, ListTokens::new("org_1"), 10_000)
            .await
            .unwrap_err();
        assert_eq!(
            message(error),
            "the store sent a page cursor of 1048576 bytes (at most 1024 accepted)"
        );
        assert_eq!(store.calls(), 1);

        // A cursor of exactly the cap is fine.
        let store = Hostile::new(|_, call| {
            let next = (call == 0).then(|| "y".repeat(MAX_PAGE_TOKEN_LEN));
            page(keys(1, call), next)
        });
        let all = list_all(&store, ListTokens::new("org_1"), 10)
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
    });
}

#[test]
fn a_repeated_cursor_is_still_a_loop() {
    rt().block_on(async {
        let store = Hostile::new(|_, call| page(keys(1, call), Some(format!("c{}", call % 3))));
        let error = list_all(&store, ListTokens::new("org_1"), 10_000)
            .await
            .unwrap_err();
        assert_eq!(message(error), "the store repeated a page cursor");
        assert_eq!(store.calls(), 4);
    });
}

#[test]
fn the_whole_walk_has_a_deadline() {
    rt().block_on(async {
        // Pages that each take 10 ms, forever: the deadline, not the page cap, ends the walk,
        // at the first page boundary past it.
        let calls = AtomicUsize::new(0);
        let limits = WalkLimits {
            max_pages: usize::MAX,
            max_keys: MAX_LISTED_KEYS,
            max_cursor_len: MAX_PAGE_TOKEN_LEN,
            deadline: Duration::from_millis(30),
        };
        let error = walk_pages_within(
            ListTokens::new("org_1"),
            limits,
            |_| {
                let call = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok(page(keys(1, call), Some(format!("c{call}"))))
                }
            },
            KeyStoreError::unavailable,
        )
        .await
        .unwrap_err();
        let read = calls.load(Ordering::SeqCst);
        assert_eq!(
            message(error),
            format!("listing every key took longer than 30ms ({read} pages read)")
        );
    });
}

#[test]
fn an_honest_store_is_listed_whole() {
    rt().block_on(async {
        let store = InMemoryTokens::new();
        for _ in 0..25 {
            store.create(CreateToken::new("org_1")).unwrap();
        }
        let all = list_all(&store, ListTokens::new("org_1"), 10)
            .await
            .unwrap();
        assert_eq!(all.len(), 25);
        let all = list_all(&store, ListTokens::new("org_1").page_size(5), 5)
            .await
            .unwrap();
        assert_eq!(all.len(), 25);
        // Exactly the page cap of pages and a full last page: fine; one page fewer: an error.
        assert!(
            list_all(&store, ListTokens::new("org_1").page_size(5), 4)
                .await
                .is_err()
        );
    });
}
