//! What streams and consumers report through the `metrics` facade.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `statefold_consumer_events_total` | counter: events handled | `stream`, `consumer` |
//! | `statefold_consumer_errors_total` | counter: failed attempts (handler or database) | `stream`, `consumer` |
//! | `statefold_consumer_dead_letters_total` | counter: events given up on | `stream`, `consumer` |
//! | `statefold_consumer_lag_events` | gauge: events committed after the cursor (by id), measured against the log's end | `stream`, `consumer` |
//! | `statefold_consumer_lag_seconds` | gauge: age of the oldest event committed after the cursor, 0 when caught up | `stream`, `consumer` |
//! | `statefold_stream_stalled_seconds` | gauge: how long committed events have waited behind a running transaction (a MySQL hole, the PostgreSQL fence), 0 when not | `stream`, `consumer` (empty for a plain stream) |
//! | `statefold_stream_gap_wait_seconds` | histogram: time a reader waited on a hole (MySQL) or the transaction fence (PostgreSQL) | `stream` |
//!
//! A rising `stalled_seconds` means a transaction somewhere holds the
//! stream back (on PostgreSQL any long or idle-in-transaction session, or
//! a forgotten prepared transaction, anywhere on the cluster); the reader's
//! warning names it. A rising `lag` with no stall means the consumer is
//! slower than the writers, or failing (see `errors_total`).

use std::time::Duration;

/// Events handled.
pub const EVENTS: &str = "statefold_consumer_events_total";
/// Failed attempts to handle an event.
pub const ERRORS: &str = "statefold_consumer_errors_total";
/// Events recorded as dead letters.
pub const DEAD_LETTERS: &str = "statefold_consumer_dead_letters_total";
/// Lag in events.
pub const LAG_EVENTS: &str = "statefold_consumer_lag_events";
/// Lag in seconds.
pub const LAG_SECONDS: &str = "statefold_consumer_lag_seconds";
/// Time waited on gaps.
pub const GAP_WAIT: &str = "statefold_stream_gap_wait_seconds";
/// How long a reader has been stalled.
pub const STALLED: &str = "statefold_stream_stalled_seconds";

pub(crate) fn stalled(stream: &'static str, consumer: &str) -> metrics::Gauge {
    metrics::gauge!(STALLED, "stream" => stream, "consumer" => consumer.to_owned())
}

pub(crate) fn gap_waited(stream: &'static str, waited: Duration) {
    metrics::histogram!(GAP_WAIT, "stream" => stream).record(waited.as_secs_f64());
}

/// A consumer's instruments, registered once.
pub(crate) struct ConsumerMetrics {
    pub(crate) events: metrics::Counter,
    pub(crate) errors: metrics::Counter,
    pub(crate) dead_letters: metrics::Counter,
    pub(crate) lag_events: metrics::Gauge,
    pub(crate) lag_seconds: metrics::Gauge,
}

impl ConsumerMetrics {
    pub(crate) fn new(stream: &'static str, consumer: &str) -> Self {
        let labels = [("stream", stream.to_owned()), ("consumer", consumer.to_owned())];
        Self {
            events: metrics::counter!(EVENTS, &labels),
            errors: metrics::counter!(ERRORS, &labels),
            dead_letters: metrics::counter!(DEAD_LETTERS, &labels),
            lag_events: metrics::gauge!(LAG_EVENTS, &labels),
            lag_seconds: metrics::gauge!(LAG_SECONDS, &labels),
        }
    }
}
