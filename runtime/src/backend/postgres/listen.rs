//! Cross-process wake-ups: one `LISTEN` connection per pool, shared by every
//! stream of the process, whatever machine it reads.

use crate::backend::WakeUps;
use futures::StreamExt;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// The listening task of one pool, and its channels.
struct Listener {
    /// Asks the task to listen on a channel; answered once it does.
    listen: mpsc::UnboundedSender<(String, oneshot::Sender<Result<(), sqlx::Error>>)>,
    /// Per channel, a counter bumped at every notification on it.
    channels: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    /// The last stream is gone: the connection goes back to the pool.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The listeners of this process, by pool (the address of the pool's
/// options, shared by its clones).
static LISTENERS: Mutex<Option<HashMap<usize, Weak<Listener>>>> = Mutex::new(None);

/// Wake-ups on `channel`: a notification on it, or the listening
/// connection lost (notifications may have been missed meanwhile).
pub(super) async fn subscribe(pool: &PgPool, channel: &str) -> Result<WakeUps, sqlx::Error> {
    let listener = listener(pool);
    let receiver = {
        let mut channels = listener.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.entry(channel.to_owned()).or_insert_with(|| watch::Sender::new(0)).subscribe()
    };
    let (done, listening) = oneshot::channel();
    if listener.listen.send((channel.to_owned(), done)).is_ok() {
        listening.await.map_err(|_| sqlx::Error::PoolClosed)??;
    }
    // The stream keeps the listener alive.
    let wake_ups = futures::stream::unfold((receiver, listener), |(mut receiver, listener)| async move {
        receiver.changed().await.ok()?;
        Some(((), (receiver, listener)))
    });
    Ok(wake_ups.boxed())
}

fn listener(pool: &PgPool) -> Arc<Listener> {
    let key = Arc::as_ptr(&pool.connect_options()) as usize;
    let mut listeners = LISTENERS.lock().unwrap_or_else(PoisonError::into_inner);
    let listeners = listeners.get_or_insert_with(HashMap::new);
    if let Some(listener) = listeners.get(&key).and_then(Weak::upgrade) {
        return listener;
    }
    listeners.retain(|_, listener| listener.strong_count() > 0);
    let (listen, requests) = mpsc::unbounded_channel();
    let channels = Arc::new(Mutex::new(HashMap::new()));
    let task = tokio::spawn(run(pool.clone(), requests, Arc::clone(&channels)));
    let listener = Arc::new(Listener { listen, channels, task });
    listeners.insert(key, Arc::downgrade(&listener));
    listener
}

type Requests = mpsc::UnboundedReceiver<(String, oneshot::Sender<Result<(), sqlx::Error>>)>;

/// Listens on one connection of `pool`, on every channel asked for, and
/// wakes each channel's streams; a lost connection wakes them all, then
/// the listener connects again and listens on them all again.
async fn run(
    pool: sqlx::Pool<Postgres>,
    mut requests: Requests,
    channels: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
) {
    let wake = |channel: Option<&str>| {
        let channels = channels.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, sender) in channels.iter() {
            if channel.is_none_or(|channel| channel == name) {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    };
    let mut listener: Option<PgListener> = None;
    let mut listening: Vec<String> = Vec::new();
    loop {
        let Some(active) = &mut listener else {
            match connect(&pool, &listening).await {
                Ok(connected) => {
                    listener = Some(connected);
                    wake(None);
                }
                Err(error) => {
                    tracing::debug!(%error, "LISTEN connection failed; streams poll meanwhile");
                    // Those waiting to listen are told, and may ask again.
                    while let Ok((_, done)) = requests.try_recv() {
                        let _ = done.send(Err(sqlx::Error::Protocol(format!("LISTEN connection failed: {error}"))));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            continue;
        };
        tokio::select! {
            request = requests.recv() => {
                let Some((channel, done)) = request else { return };
                let result = if listening.contains(&channel) { Ok(()) } else { active.listen(&channel).await };
                if result.is_ok() && !listening.contains(&channel) {
                    listening.push(channel);
                }
                let failed = result.is_err();
                let _ = done.send(result);
                if failed {
                    listener = None;
                }
            }
            notification = active.try_recv() => match notification {
                Ok(Some(notification)) => wake(Some(notification.channel())),
                // The connection was lost: what was sent meanwhile is unknown.
                Ok(None) | Err(_) => {
                    wake(None);
                    listener = None;
                }
            },
        }
    }
}

async fn connect(pool: &PgPool, channels: &[String]) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    listener.listen_all(channels).await?;
    Ok(listener)
}
