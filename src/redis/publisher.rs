//! The publisher task: sends queued announcements, one at a time, retrying each until Redis
//! takes it. Revocation is final, so a late announcement is still right; an update only makes
//! other instances forget cached answers, so a late or repeated one is harmless too. Order
//! does not matter either.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::timeout;

use super::Announcement;
use super::Shared;
use super::subscriber::Backoff;

pub(super) async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<Announcement>) {
    let mut backoff = Backoff::new(shared.min_backoff, shared.max_backoff);
    let mut connection: Option<::redis::aio::MultiplexedConnection> = None;
    let config = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.timeout))
        .set_response_timeout(Some(shared.timeout));
    while let Some(Announcement { kind, message }) = queue.recv().await {
        let payload = message.encode_as(kind);
        let mut failures = 0u32;
        loop {
            let attempt = async {
                let conn = match connection.as_mut() {
                    Some(conn) => conn,
                    None => connection.insert(
                        shared
                            .client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await?,
                    ),
                };
                ::redis::cmd("PUBLISH")
                    .arg(&shared.channel)
                    .arg(&payload)
                    .query_async::<i64>(conn)
                    .await
            };
            let error = match timeout(shared.timeout.saturating_mul(2), attempt).await {
                Ok(Ok(receivers)) => {
                    shared.counters.events_published.bump();
                    shared.published.send_modify(|count| *count += 1);
                    tracing::debug!(redis = "publish", token_id = %message.token_id, ?kind, receivers, "announced");
                    backoff.reset();
                    break;
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            connection = None;
            shared.counters.publish_failures.bump();
            failures += 1;
            if failures == 1 {
                tracing::warn!(redis = "publish", token_id = %message.token_id, ?kind, %error, "cannot announce yet; retrying with backoff");
            }
            tokio::time::sleep(backoff.next()).await;
        }
    }
}
