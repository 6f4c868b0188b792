//! One API instance's ear on PostgreSQL: a connection of its own (not from the pool) that
//! `LISTEN`s on [`QUEUE_CHANNEL`] and turns other instances' notifications into
//! [`QueueSignal`]s. When the connection drops (or stops answering the ping it gets after
//! [`PING_EVERY`] of silence) it is opened again with backoff ([`FIRST_RETRY`] doubling up
//! to [`MAX_RETRY`], with jitter), and every (re)connect is followed by
//! [`QueueSignal::Missed`]: notifications sent while nobody listened are gone, so every
//! channel's queue is read again. The task ends when nobody subscribes any more.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::instances::{Payload, QUEUE_CHANNEL, QueueSignal};

/// A silent connection is pinged after this long, to find out whether it is still there.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// How long a ping (or the connect and `LISTEN`) may take before the connection counts as lost.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// The name the listening connection shows in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "radio24 queue listener";

/// Why listening stopped.
enum Stopped {
    /// Nobody subscribes any more.
    Unwanted,
    /// The connection was lost; reconnect.
    Lost(String),
}

/// Listens for instance `me` until nobody subscribes to `signals`.
pub(super) async fn run(url: SecretString, me: Uuid, signals: broadcast::Sender<QueueSignal>) {
    let mut backoff = FIRST_RETRY;
    let mut down: Option<String> = None;
    loop {
        if signals.receiver_count() == 0 {
            return;
        }
        match connect(&url).await {
            Ok(mut conn) => {
                match down.take() {
                    Some(_) => tracing::info!("listening for other instances' queue changes again"),
                    None => tracing::debug!("listening for other instances' queue changes"),
                }
                backoff = FIRST_RETRY;
                // Whatever was sent before this LISTEN took effect is unknown here.
                let _ = signals.send(QueueSignal::Missed);
                match listen(&mut conn, me, &signals).await {
                    Stopped::Unwanted => return,
                    Stopped::Lost(why) => {
                        tracing::warn!(%why, "lost the connection that hears other instances' queue changes; reconnecting");
                        down = Some(why);
                    }
                }
            }
            Err(why) => {
                if down.as_deref() != Some(why.as_str()) {
                    tracing::warn!(%why, retry_in = ?backoff, "cannot listen for other instances' queue changes");
                    down = Some(why);
                }
            }
        }
        let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 4);
        tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
        backoff = (backoff * 2).min(MAX_RETRY);
    }
}

async fn connect(url: &SecretString) -> Result<AsyncPgConnection, String> {
    let connecting = async {
        let mut conn = AsyncPgConnection::establish(url.expose_secret())
            .await
            .map_err(|e| e.to_string())?;
        diesel::sql_query(format!("SET application_name = '{APPLICATION_NAME}'"))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        diesel::sql_query(format!("LISTEN {QUEUE_CHANNEL}"))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(conn)
    };
    tokio::time::timeout(ANSWER_WITHIN, connecting)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {ANSWER_WITHIN:?}")))
}

async fn listen(
    conn: &mut AsyncPgConnection,
    me: Uuid,
    signals: &broadcast::Sender<QueueSignal>,
) -> Stopped {
    loop {
        // The stream reads the connection's buffer of notifications: making it anew after a
        // ping loses none.
        let next = {
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            tokio::time::timeout(PING_EVERY, notifications.next()).await
        };
        match next {
            Ok(Some(Ok(notification))) => {
                let payload: Payload = match serde_json::from_str(&notification.payload) {
                    Ok(payload) => payload,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipped a queue notification this version cannot read");
                        continue;
                    }
                };
                if payload.from == me {
                    continue;
                }
                let signal = QueueSignal::Changed {
                    channel: payload.channel,
                    ids: payload.ids,
                };
                if signals.send(signal).is_err() {
                    return Stopped::Unwanted;
                }
            }
            Ok(Some(Err(e))) => return Stopped::Lost(e.to_string()),
            Ok(None) => return Stopped::Lost("the connection closed".into()),
            Err(_) => {
                if signals.receiver_count() == 0 {
                    return Stopped::Unwanted;
                }
                let ping = diesel::sql_query("SELECT 1").execute(conn);
                match tokio::time::timeout(ANSWER_WITHIN, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Stopped::Lost(e.to_string()),
                    Err(_) => {
                        return Stopped::Lost(format!(
                            "no answer to a ping within {ANSWER_WITHIN:?}"
                        ));
                    }
                }
            }
        }
    }
}
