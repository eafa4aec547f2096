//! NATS JetStream: a machine's log relayed to a JetStream stream, consumers
//! fed from it exactly once, and the outbox dispatcher's JetStream destination
//! (feature `nats`, through the official client, `async-nats`).
//!
//! ```text
//!  database ──(gap-safe stream)──> Relay ──(Nats-Msg-Id, expected sequence)──> JetStream
//!                                                                                  │
//!              consumers in other services <──(Source: cursor in their own DB)─────┘
//! ```
//!
//! - [`Relay`] reads a machine's log gap-safely (as a local consumer does)
//!   and publishes each event to `<prefix>.<table>.<state>`, many publishes
//!   in flight, their acknowledgements awaited in order. One relay per log
//!   works at a time across processes (a lease in `statefold_leases`); its
//!   cursor in `statefold_cursors` moves only past acknowledged events.
//!   Each publish carries `Nats-Msg-Id` (the event's table and position), so
//!   JetStream drops what a crashed relay sends again within the duplicate
//!   window, and `Nats-Expected-Last-Sequence` (the sequence of the event
//!   before it), so that when one publish of a pipeline is lost, JetStream
//!   refuses every later one instead of storing them ahead of it: the
//!   stream holds the log in order, without holes. After any failure the
//!   relay reads the stream's last event and goes on after it.
//! - [`Source`] runs the same [`Handler`](crate::Handler) as a local
//!   [`Consumer`](crate::Consumer), on a durable JetStream consumer: the
//!   cursor is the event's own log position (header [`POSITION`]), saved
//!   in the handler's transaction, and the message is acknowledged after
//!   the commit; anything at or below the cursor is acknowledged and
//!   skipped. A message that is not a relayed event stops it with
//!   [`Error::Malformed`] naming its sequence, or goes to a dead-letter
//!   subject if configured.
//! - [`JetStreamDestination`] publishes an outbox dispatcher's messages with
//!   the outbox message id as `Nats-Msg-Id`.
//!
//! [`metrics`] lists what they report.

mod config;
mod destination;
pub mod metrics;
mod relay;
mod source;
mod wire;

pub use config::{Retention, StreamConfig};
pub use destination::JetStreamDestination;
pub use relay::Relay;
pub use source::Source;

/// The client this module is built on: connect with it
/// (`statefold::remote::nats::async_nats::connect(url)`), so the versions match.
pub use async_nats;

/// The header carrying a relayed event's log position (`Position`'s text form).
pub const POSITION: &str = "Statefold-Position";
/// The header of a dead letter: why its message could not be handled.
pub const DEAD_LETTER_ERROR: &str = "Statefold-Error";
/// The header of a dead letter: its message's sequence in its stream.
pub const DEAD_LETTER_SEQUENCE: &str = "Statefold-Stream-Sequence";

/// What the JetStream relay, source and destination report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream exists, configured otherwise than asked.
    #[error("JetStream stream `{stream}` exists with {field} {actual}, but {expected} is configured: change the configuration, or update or delete the stream")]
    StreamMismatch {
        /// The stream's name.
        stream: String,
        /// What differs: subjects, retention, duplicate window, replicas.
        field: &'static str,
        /// What is configured.
        expected: String,
        /// What the stream has.
        actual: String,
    },

    /// A message that is not a relayed event of this machine: the source
    /// stopped before it (nothing was handled or acknowledged).
    #[error("JetStream stream `{stream}`, sequence {sequence}: not a relayed `{machine}` event ({reason}); the consumer stopped before it: remove the message, or give the source a dead-letter subject")]
    Malformed {
        /// The stream's name.
        stream: String,
        /// The message's stream sequence.
        sequence: u64,
        /// The machine expected.
        machine: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The relay's stream holds a message that its relay did not publish:
    /// a relayed stream must hold only its relay's events.
    #[error("JetStream stream `{stream}`, sequence {sequence}: not published by the relay of `{machine}` ({reason}); a relay's stream must hold only its events: give the relay a stream of its own")]
    ForeignMessage {
        /// The stream's name.
        stream: String,
        /// The message's stream sequence.
        sequence: u64,
        /// The relay's machine.
        machine: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A subject, prefix or stream name that NATS cannot take.
    #[error("`{value}` is not a valid JetStream {what}: no spaces, wildcards (`*`, `>`) or empty tokens{}", if *.what == "stream name" { ", no dots or slashes" } else { "" })]
    InvalidName {
        /// What it names: a stream, a subject prefix, a subject.
        what: &'static str,
        /// The value.
        value: String,
    },

    /// NATS or JetStream failed where retrying cannot help.
    #[error("JetStream: {context}: {message}")]
    Nats {
        /// What was being done.
        context: &'static str,
        /// The client's message.
        message: String,
    },

    /// The database side failed where retrying cannot help.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

impl Error {
    pub(crate) fn nats(context: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Nats { context, message: error.to_string() }
    }
}

/// Whether `value` is one subject token: not empty, no dot, wildcard,
/// space or control character.
pub(crate) fn valid_token(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
}

/// Whether `value` can name a stream: one token, no slashes.
pub(crate) fn valid_stream_name(value: &str) -> bool {
    valid_token(value) && !value.contains(['/', '\\'])
}

/// Whether `value` is a publishable subject: tokens joined by dots.
pub(crate) fn valid_subject(value: &str) -> bool {
    value.split('.').all(valid_token)
}
