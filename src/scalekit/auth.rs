//! The client-credentials access token: fetched lazily, cached until shortly before it expires,
//! refreshed by one task at a time, and force-refreshed (after a 401) at most once per
//! [`FORCED_REFRESH_INTERVAL`].

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use zeroize::Zeroizing;

use super::ScalekitError;

/// How early a token is renewed before its announced expiry (python-lite's margin).
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// The lifetime assumed when the token endpoint does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest lifetime believed.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// The lifetime assumed for an `expires_in` of 0 (or a negative one, read as 0). Believed, it
/// would make every token stale on arrival, so every caller would fetch its own, one after
/// another; a token the server stops accepting earlier only costs one 401 and a (rate-limited)
/// forced refresh. Short positive lifetimes are honoured (renewed at half their lifetime).
const ZERO_LIFETIME: Duration = Duration::from_secs(30);
/// At most one forced refresh per interval (Java's figure): if Scalekit ever answered 401 for a
/// bad API key, hostile traffic must not turn every request into an `/oauth/token` round trip.
pub(crate) const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// A failed fetch is shared with every caller that was already waiting for it, and with callers
/// arriving within this window, so an outage of the token endpoint is not hammered.
const FAILURE_MEMORY: Duration = Duration::from_millis(500);

/// One access token.
pub(crate) struct AccessToken {
    value: Zeroizing<String>,
    /// Renew from this instant on.
    refresh_at: Instant,
    /// The server stops accepting it at this instant (as announced).
    expires_at: Instant,
    /// Increases with every fetched token: tells a 401 on an old token from one on the current.
    generation: u64,
}

impl AccessToken {
    pub(crate) fn new(value: String, expires_in: Option<u64>, generation: u64) -> Self {
        // Capped: an absurd `expires_in` must neither overflow `Instant` nor pin a token for
        // years (Scalekit's are about a day); nor may 0 leave no usable token at all.
        let lifetime = match expires_in {
            None => DEFAULT_LIFETIME,
            Some(0) => ZERO_LIFETIME,
            Some(seconds) => Duration::from_secs(seconds.min(MAX_LIFETIME.as_secs())),
        };
        // `expires_in - 60 s`, except that short-lived tokens (under two minutes) are renewed
        // at half their lifetime rather than never being considered fresh.
        let margin = EXPIRY_MARGIN.min(lifetime / 2);
        let now = Instant::now();
        Self {
            value: Zeroizing::new(value),
            refresh_at: now + (lifetime - margin),
            expires_at: now + lifetime,
            generation,
        }
    }

    pub(crate) fn value(&self) -> &str {
        &self.value
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }

    /// Still accepted by the server, though due for renewal.
    fn is_usable(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct RefreshState {
    generation: u64,
    last_forced: Option<Instant>,
    /// The generation the last forced refresh minted (`None` if it failed).
    forced_generation: Option<u64>,
    last_failure: Option<(Instant, ScalekitError)>,
}

/// The cache. The current token sits behind a std lock that is only held to clone an `Arc`;
/// fetching happens under a tokio mutex, so exactly one fetch is in flight and every waiter
/// re-checks the cache once it gets the lock (single flight, no lock held across I/O but the
/// refresh lock itself).
///
/// Every fetch runs in a task of its own that owns the refresh lock: a caller whose deadline
/// passes stops waiting, but the fetch goes on and records its outcome (the new token, or the
/// failure), so a slow token endpoint never leaves the cache half-updated. While the current
/// token is still accepted by the server, renewal happens in the background and nobody waits
/// for it.
#[derive(Default)]
pub(crate) struct TokenCache {
    current: Arc<RwLock<Option<Arc<AccessToken>>>>,
    refresh: Arc<tokio::sync::Mutex<RefreshState>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("current", &self.peek())
            .finish()
    }
}

/// What `fetch` closures must be: owned, so a fetch can outlive the caller that started it.
pub(crate) trait Fetch: FnOnce(u64) -> Self::Fut + Send + 'static {
    type Fut: Future<Output = Result<AccessToken, ScalekitError>> + Send + 'static;
}

impl<F, Fut> Fetch for F
where
    F: FnOnce(u64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<AccessToken, ScalekitError>> + Send + 'static,
{
    type Fut = Fut;
}

impl TokenCache {
    fn peek(&self) -> Option<Arc<AccessToken>> {
        peek(&self.current)
    }

    /// Drops the cached token (the next call fetches a new one).
    pub(crate) fn clear(&self) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A token the server accepts: the cached one, or one fetched by `fetch` (by this caller or
    /// by the caller that held the refresh lock before it). A token due for renewal but not
    /// expired is returned at once, and renewed in the background.
    pub(crate) async fn get(&self, fetch: impl Fetch) -> Result<Arc<AccessToken>, ScalekitError> {
        let now = Instant::now();
        match self.peek() {
            Some(token) if token.is_fresh(now) => return Ok(token),
            Some(token) if token.is_usable(now) => {
                self.renew_in_background(now, fetch);
                return Ok(token);
            }
            _ => {}
        }
        let waiting_since = Instant::now();
        let state = self.refresh.clone().lock_owned().await;
        if let Some(token) = self.peek().filter(|t| t.is_usable(Instant::now())) {
            return Ok(token);
        }
        if let Some(error) = recent_failure(&state, waiting_since) {
            return Err(error);
        }
        self.fetch_detached(state, false, fetch).await
    }

    /// Starts a renewal unless one is running or one failed a moment ago (an outage of the
    /// token endpoint is retried at most every [`FAILURE_MEMORY`], one fetch at a time).
    fn renew_in_background(&self, now: Instant, fetch: impl Fetch) {
        let Ok(state) = self.refresh.clone().try_lock_owned() else {
            return; // a fetch is already running
        };
        if self.peek().is_some_and(|t| t.is_fresh(now)) || recent_failure(&state, now).is_some() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(fetch_task(self.current.clone(), state, false, fetch));
        }
    }

    /// Replaces `stale` (which just earned a 401) with a new token. Returns `None` when no
    /// better token can be had now: a forced refresh happened less than
    /// [`FORCED_REFRESH_INTERVAL`] ago. If another caller already replaced `stale`, its token is
    /// returned without a new fetch.
    pub(crate) async fn refresh_after_401(
        &self,
        stale: &AccessToken,
        fetch: impl Fetch,
    ) -> Result<Option<Arc<AccessToken>>, ScalekitError> {
        let waiting_since = Instant::now();
        let mut state = self.refresh.clone().lock_owned().await;
        let replaced = self
            .peek()
            .filter(|t| t.generation != stale.generation && t.is_fresh(Instant::now()));
        if let Some(token) = replaced {
            return Ok(Some(token));
        }
        let now = Instant::now();
        if state
            .last_forced
            .is_some_and(|at| now.duration_since(at) < FORCED_REFRESH_INTERVAL)
        {
            if state.forced_generation == Some(stale.generation) {
                // A token minted by the last forced refresh earned this 401: a fresh token is
                // refused too, which is the caller's verdict to draw.
                tracing::debug!("access token refresh after 401 skipped: rate-limited");
                return Ok(None);
            }
            // The last forced refresh failed: the 401 is on a token Scalekit no longer takes,
            // so it says nothing about the API key. Report the token endpoint's failure, never
            // a verdict. (A forced refresh whose caller gave up still completes in its own
            // task, so "failed" here means the endpoint really failed.)
            tracing::debug!("access token refused and the last forced refresh failed");
            return Err(state
                .last_failure
                .as_ref()
                .map(|(_, error)| error.clone())
                .unwrap_or_else(|| ScalekitError::UpstreamAuth {
                    status: None,
                    message: "access token refused; a forced refresh ran less than 5 s ago"
                        .to_owned(),
                }));
        }
        if let Some(error) = recent_failure(&state, waiting_since) {
            return Err(error);
        }
        state.last_forced = Some(now);
        state.forced_generation = None;
        self.fetch_detached(state, true, fetch).await.map(Some)
    }

    /// Runs `fetch` in a task of its own (holding the refresh lock) and waits for it; the
    /// fetch completes and records its outcome even if this caller stops waiting.
    async fn fetch_detached(
        &self,
        state: tokio::sync::OwnedMutexGuard<RefreshState>,
        forced: bool,
        fetch: impl Fetch,
    ) -> Result<Arc<AccessToken>, ScalekitError> {
        let task = fetch_task(self.current.clone(), state, forced, fetch);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime.spawn(task).await.unwrap_or_else(|_| {
                Err(ScalekitError::UpstreamAuth {
                    status: None,
                    message: "the access-token fetch was aborted".to_owned(),
                })
            }),
            Err(_) => task.await,
        }
    }
}

fn peek(current: &RwLock<Option<Arc<AccessToken>>>) -> Option<Arc<AccessToken>> {
    current
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// One fetch, holding the refresh lock until its outcome is recorded.
async fn fetch_task(
    current: Arc<RwLock<Option<Arc<AccessToken>>>>,
    mut state: tokio::sync::OwnedMutexGuard<RefreshState>,
    forced: bool,
    fetch: impl Fetch,
) -> Result<Arc<AccessToken>, ScalekitError> {
    state.generation += 1;
    match fetch(state.generation).await {
        Ok(token) => {
            let token = Arc::new(token);
            state.last_failure = None;
            if forced {
                state.forced_generation = Some(token.generation);
            }
            *current.write().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
            Ok(token)
        }
        Err(error) => {
            tracing::warn!(%error, "could not get a Scalekit access token");
            state.last_failure = Some((Instant::now(), error.clone()));
            Err(error)
        }
    }
}

/// The last fetch failure, if it ended after `waiting_since` (this caller queued behind it) or
/// very recently.
fn recent_failure(state: &RefreshState, waiting_since: Instant) -> Option<ScalekitError> {
    let (at, error) = state.last_failure.as_ref()?;
    let recent = *at >= waiting_since || at.elapsed() < FAILURE_MEMORY;
    recent.then(|| error.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lifetimes_and_margins() {
        let long = AccessToken::new("a".into(), Some(86_399), 1);
        assert!(long.refresh_at - Instant::now() <= Duration::from_secs(86_339));
        assert!(long.refresh_at - Instant::now() > Duration::from_secs(86_000));
        let short = AccessToken::new("a".into(), Some(10), 1);
        assert!(short.is_fresh(Instant::now()));
        assert!(short.refresh_at - Instant::now() <= Duration::from_secs(5));
        let absurd = AccessToken::new("a".into(), Some(u64::MAX), 1);
        assert!(absurd.expires_at - Instant::now() <= MAX_LIFETIME);
        let default = AccessToken::new("a".into(), None, 1);
        assert!(default.refresh_at - Instant::now() > Duration::from_secs(3000));
        assert_eq!(format!("{default:?}"), "AccessToken { generation: 1, .. }");
    }

    /// Regression: an `expires_in` of 0 gave tokens that were never usable, so each waiting
    /// caller fetched its own, one after another.
    #[tokio::test]
    async fn a_zero_lifetime_is_taken_for_30_seconds() {
        let token = AccessToken::new("a".into(), Some(0), 1);
        let now = Instant::now();
        assert!(token.is_fresh(now));
        assert!(token.expires_at - now > ZERO_LIFETIME - Duration::from_secs(1));
        assert!(token.expires_at - now <= ZERO_LIFETIME);
        // One second is short, but a lifetime: honoured.
        let token = AccessToken::new("a".into(), Some(1), 1);
        assert!(token.expires_at - Instant::now() <= Duration::from_secs(1));
        assert!(token.is_fresh(Instant::now()));
    }

    /// Regression (found by the fault matrix): after a forced refresh *failed*, further 401s
    /// within the refresh interval were reported as `Ok(None)`, which the caller reads as
    /// "refused even with a fresh token", i.e. an invalid API key (401), while the access
    /// token was the problem (503).
    #[tokio::test]
    async fn a_failed_forced_refresh_is_never_a_verdict() {
        let cache = TokenCache::default();
        let stale = cache
            .get(|g| async move { Ok(AccessToken::new("old".into(), None, g)) })
            .await
            .unwrap();
        let failure = ScalekitError::UpstreamAuth {
            status: Some(500),
            message: "down".into(),
        };
        let first = cache
            .refresh_after_401(&stale, {
                let failure = failure.clone();
                move |_| async move { Err(failure) }
            })
            .await;
        assert_eq!(first.unwrap_err(), failure);
        // Rate-limited now, but the stale token is still the one Scalekit refused.
        tokio::time::sleep(FAILURE_MEMORY + Duration::from_millis(50)).await;
        let second = cache
            .refresh_after_401(&stale, |g| async move {
                Ok(AccessToken::new("new".into(), None, g))
            })
            .await;
        assert_eq!(second.unwrap_err(), failure);
    }

    #[tokio::test]
    async fn a_fresh_token_refused_again_is_the_callers_verdict() {
        let cache = TokenCache::default();
        let stale = cache
            .get(|g| async move { Ok(AccessToken::new("old".into(), None, g)) })
            .await
            .unwrap();
        let fresh = cache
            .refresh_after_401(&stale, |g| async move {
                Ok(AccessToken::new("new".into(), None, g))
            })
            .await
            .unwrap()
            .unwrap();
        let again = cache
            .refresh_after_401(&fresh, |g| async move {
                Ok(AccessToken::new("newer".into(), None, g))
            })
            .await
            .unwrap();
        assert!(again.is_none(), "rate-limited: no second forced refresh");
    }

    #[tokio::test]
    async fn failures_are_shared_briefly() {
        let cache = TokenCache::default();
        let first = cache
            .get(|_| async { Err(ScalekitError::Timeout) })
            .await
            .unwrap_err();
        assert_eq!(first, ScalekitError::Timeout);
        // Within the failure memory, no second fetch.
        let second = cache
            .get(|_| async { Ok(AccessToken::new("t".into(), None, 9)) })
            .await
            .unwrap_err();
        assert_eq!(second, ScalekitError::Timeout);
    }
}
