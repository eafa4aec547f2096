//! The outbox dispatcher's JetStream destination.

use super::valid_subject;
use crate::effects::{Delivery, Destination, Outgoing, SendError};
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use std::fmt;

/// Publishes an outbox dispatcher's messages to JetStream: the message's
/// topic as the subject (after an optional prefix), its payload as JSON,
/// its headers as headers, and the outbox message id as `Nats-Msg-Id`, so
/// that JetStream drops a message the dispatcher sends again (after a crash
/// between the send and marking it sent) within the stream's duplicate
/// window. A send succeeds once JetStream acknowledged it; a stream must
/// take the subject.
///
/// Requests (HTTP) are refused as permanent errors; a topic that is no
/// valid subject too. NATS being away, a timeout or a subject no stream
/// takes yet are retryable.
///
/// ```no_run
/// # use statefold::{Sqlite, Store};
/// # use statefold::effects::Dispatcher;
/// use statefold::remote::nats::{async_nats, JetStreamDestination};
///
/// # async fn run(dispatcher: Dispatcher<Sqlite>) -> Result<(), Box<dyn std::error::Error>> {
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let destination = JetStreamDestination::new(client).prefix("shop.outbox");
/// # drop(destination);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct JetStreamDestination {
    js: Context,
    prefix: Option<String>,
}

impl fmt::Debug for JetStreamDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamDestination").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl JetStreamDestination {
    /// Publishes through `client`, to each message's topic.
    pub fn new(client: async_nats::Client) -> Self {
        Self { js: async_nats::jetstream::new(client), prefix: None }
    }

    /// Publishes to `<prefix>.<topic>`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The subject of a topic.
    pub fn subject(&self, topic: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}.{topic}"),
            None => topic.to_owned(),
        }
    }
}

impl Destination for JetStreamDestination {
    async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let Outgoing::Message(message) = &delivery.outgoing else {
            return Err(SendError::permanent("JetStream takes messages, not HTTP requests"));
        };
        let subject = self.subject(&message.topic);
        if !valid_subject(&subject) {
            return Err(SendError::permanent(format!(
                "`{subject}` is not a valid JetStream subject: no spaces, wildcards (`*`, `>`) or empty tokens"
            )));
        }
        let payload = serde_json::to_vec(&message.payload).map_err(|e| SendError::permanent(e.to_string()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &message.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        headers.insert("Nats-Msg-Id", delivery.id.as_str());
        let ack = self
            .js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| SendError::retryable(format!("publish: {e}")))?;
        ack.await.map_err(|e| SendError::retryable(format!("publish not acknowledged: {e}")))?;
        Ok(())
    }
}
