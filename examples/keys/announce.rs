//! Announcing revocations to other instances over Redis when `REDIS_URL` is set (feature
//! `redis`), so `revoke` and `rotate` reach every instance's cache at once, not after its TTL.

#[cfg(feature = "redis")]
use std::time::Duration;

use axum_api_key::scalekit::ScalekitClient;

/// How long the CLI waits for its announcements to leave before giving up.
#[cfg(feature = "redis")]
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The feed a command's revocations are announced on, if any.
pub struct Announcer {
    #[cfg(feature = "redis")]
    feed: Option<axum_api_key::redis::RedisRevocations>,
}

impl Announcer {
    /// Configured from `REDIS_URL` / `REDIS_CHANNEL`, listening to `client`'s revocations.
    pub fn from_env(client: &ScalekitClient) -> Result<Self, String> {
        #[cfg(feature = "redis")]
        {
            use axum_api_key::keys::KeyEventSource;
            use axum_api_key::redis::RedisRevocations;
            let feed = match RedisRevocations::builder_from_env() {
                Some(builder) => {
                    let feed = builder
                        .publish_only()
                        .timeout(Duration::from_secs(2))
                        .build()
                        .map_err(|e| format!("REDIS_URL: {e}"))?;
                    feed.publish_events_of(client.key_events());
                    Some(feed)
                }
                None => None,
            };
            Ok(Self { feed })
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = client;
            if std::env::var_os("REDIS_URL").is_some() {
                eprintln!(
                    "warning: REDIS_URL is set but this build lacks feature `redis`: revocations are not announced"
                );
            }
            Ok(Self {})
        }
    }

    /// Waits for the announcements of the command just run to leave (a CLI exits right after,
    /// which would kill the publishing task with them), and says what happened.
    pub async fn finish(&self) -> Result<(), String> {
        #[cfg(feature = "redis")]
        if let Some(feed) = &self.feed {
            if !feed.drain(DRAIN_TIMEOUT).await {
                return Err(format!(
                    "the key is revoked, but the announcement could not reach Redis within {DRAIN_TIMEOUT:?}: other instances will refuse it within their cache TTL (run the command again to retry)"
                ));
            }
            let stats = feed.stats();
            if stats.events_published > 0 {
                println!(
                    "announced {} revocation(s) on Redis channel {}",
                    stats.events_published,
                    feed.channel()
                );
            }
            if stats.unresolved > 0 {
                println!(
                    "not announced: the key's token id is unknown (already revoked?); other instances refuse it within their cache TTL"
                );
            }
        }
        Ok(())
    }
}
