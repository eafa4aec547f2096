//! The JetStream stream a machine's log is relayed to: its name, subjects
//! and limits, created or checked when a relay starts.

use super::{valid_stream_name, valid_subject, Error};
use crate::envelope::Envelope;
use crate::machine::{Machine, Status};
use crate::stream::consumer::shard_of;
use async_nats::jetstream::stream::{Config, RetentionPolicy, Stream};
use async_nats::jetstream::Context;
use std::time::Duration;

/// When JetStream may drop a stream's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retention {
    /// Kept up to the stream's limits (age, count, size), whoever read them:
    /// the log as a log. The default.
    Limits,
    /// Kept while a consumer has not acknowledged them.
    Interest,
    /// Removed once one consumer acknowledged them.
    WorkQueue,
}

impl Retention {
    fn policy(self) -> RetentionPolicy {
        match self {
            Self::Limits => RetentionPolicy::Limits,
            Self::Interest => RetentionPolicy::Interest,
            Self::WorkQueue => RetentionPolicy::WorkQueue,
        }
    }
}

/// The JetStream stream of one machine's log, and its subjects:
/// `<prefix>.<table>.<state>` (the machine's table and the state's
/// database name, e.g. `statefold.orders.paid`), with a last token for
/// the shard when [`shards`](Self::shards) is more than 1.
///
/// A relay publishes only to a stream of its own: its publishes expect the
/// stream's last sequence to be their predecessor's.
///
/// ```
/// use statefold::remote::nats::{Retention, StreamConfig};
/// use std::time::Duration;
///
/// let config = StreamConfig::new("ORDERS")
///     .prefix("shop")
///     .retention(Retention::Limits)
///     .duplicate_window(Duration::from_secs(120))
///     .replicas(1);
/// assert_eq!(config.name(), "ORDERS");
/// ```
#[derive(Debug, Clone)]
pub struct StreamConfig {
    name: String,
    prefix: String,
    retention: Retention,
    duplicate_window: Duration,
    replicas: usize,
    max_age: Duration,
    shards: u32,
}

impl StreamConfig {
    /// The stream `name`, with subjects under `statefold`, [`Retention::Limits`],
    /// a duplicate window of two minutes, one replica, no age limit, no shards.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            prefix: "statefold".into(),
            retention: Retention::Limits,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            max_age: Duration::ZERO,
            shards: 1,
        }
    }

    /// The subjects' first tokens (one or more, dot-separated).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// When JetStream may drop messages.
    #[must_use]
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How long JetStream remembers message ids to drop duplicates: a relay
    /// that crashed after a publish and restarts within it publishes nothing
    /// twice even without reading the stream's end (which it does anyway).
    #[must_use]
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// How many servers keep each message (1 on a single server).
    #[must_use]
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Drops messages older than this (zero: never).
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Adds the shard of the record (`0..count`, the same stable hash as
    /// [`Consumer::shard`](crate::Consumer::shard)) as the subjects' last
    /// token, so that a [`Source`](super::Source) per shard can filter on
    /// [`shard_filter`](Self::shard_filter). Events of one record stay in
    /// one shard, in order.
    #[must_use]
    pub fn shards(mut self, count: u32) -> Self {
        self.shards = count.max(1);
        self
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subjects the stream takes: `<prefix>.<table>.>`.
    pub fn subjects<M: Machine>(&self) -> Vec<String> {
        vec![format!("{}.{}.>", self.prefix, M::DEF.table)]
    }

    /// The subject an event is published to.
    pub fn subject<M: Machine>(&self, envelope: &Envelope<M>) -> String {
        let subject = format!("{}.{}.{}", self.prefix, M::DEF.table, envelope.to.db_name());
        match self.shards {
            1 => subject,
            count => format!("{subject}.{}", shard_of(&envelope.record_id.to_string(), count)),
        }
    }

    /// The filter of one shard's events (with [`shards`](Self::shards)).
    ///
    /// # Panics
    /// When `index` is not below the shard count.
    pub fn shard_filter<M: Machine>(&self, index: u32) -> String {
        assert!(index < self.shards, "shard {index} of {} does not exist", self.shards);
        format!("{}.{}.*.{index}", self.prefix, M::DEF.table)
    }

    /// Checks names before anything is sent.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if !valid_stream_name(&self.name) {
            return Err(Error::InvalidName { what: "stream name", value: self.name.clone() });
        }
        if !valid_subject(&self.prefix) {
            return Err(Error::InvalidName { what: "subject prefix", value: self.prefix.clone() });
        }
        Ok(())
    }

    fn config<M: Machine>(&self) -> Config {
        Config {
            name: self.name.clone(),
            subjects: self.subjects::<M>(),
            retention: self.retention.policy(),
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            max_age: self.max_age,
            ..Config::default()
        }
    }

    /// Creates the stream, or checks that the one there agrees.
    pub(crate) async fn ensure<M: Machine>(&self, js: &Context) -> Result<Stream, Error> {
        self.validate()?;
        let wanted = self.config::<M>();
        let stream = match js.get_stream(&self.name).await {
            Ok(stream) => stream,
            Err(error) if not_found(&error.to_string()) => match js.create_stream(wanted.clone()).await {
                Ok(stream) => return Ok(stream),
                // Created meanwhile by another relay: check it.
                Err(_) => js.get_stream(&self.name).await.map_err(|e| Error::nats("reading the stream", e))?,
            },
            Err(error) => return Err(Error::nats("reading the stream", error)),
        };
        let actual = &stream.cached_info().config;
        let mismatch = |field, expected: String, actual: String| {
            Err(Error::StreamMismatch { stream: self.name.clone(), field, expected, actual })
        };
        let (mut want, mut have) = (wanted.subjects.clone(), actual.subjects.clone());
        want.sort();
        have.sort();
        if want != have {
            return mismatch("subjects", format!("{want:?}"), format!("{have:?}"));
        }
        if wanted.retention != actual.retention {
            return mismatch("retention", format!("{:?}", wanted.retention), format!("{:?}", actual.retention));
        }
        if wanted.duplicate_window != actual.duplicate_window {
            return mismatch(
                "duplicate window",
                format!("{:?}", wanted.duplicate_window),
                format!("{:?}", actual.duplicate_window),
            );
        }
        if wanted.num_replicas != actual.num_replicas.max(1) {
            return mismatch("replicas", wanted.num_replicas.to_string(), actual.num_replicas.to_string());
        }
        if wanted.max_age != actual.max_age {
            return mismatch("max age", format!("{:?}", wanted.max_age), format!("{:?}", actual.max_age));
        }
        Ok(stream)
    }
}

/// Whether a JetStream error says the stream does not exist (code 10059).
pub(crate) fn not_found(message: &str) -> bool {
    message.contains("10059") || message.contains("stream not found")
}
