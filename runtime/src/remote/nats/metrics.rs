//! What the relay and the JetStream source report through the `metrics` facade.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `statefold_relay_events_total` | counter: events JetStream acknowledged | `stream` (events table), `jetstream` (stream name) |
//! | `statefold_relay_lag_events` | gauge: events committed after the last acknowledged one (by id) | `stream`, `jetstream` |
//! | `statefold_relay_lag_seconds` | gauge: age of the oldest event not yet acknowledged, 0 when caught up | `stream`, `jetstream` |
//! | `statefold_relay_publish_seconds` | histogram: from a publish to its acknowledgement | `stream`, `jetstream` |
//! | `statefold_relay_restarts_total` | counter: pipelines abandoned (a publish lost or refused, a fault) and started again from the stream's end | `stream`, `jetstream` |
//! | `statefold_relay_errors_total` | counter: failed attempts (NATS or the database), retried | `stream`, `jetstream` |
//! | `statefold_jetstream_redeliveries_total` | counter: messages JetStream delivered more than once to a source | `jetstream`, `consumer` |
//! | `statefold_jetstream_pending` | gauge: messages after the last one delivered to a source | `jetstream`, `consumer` |
//!
//! A source also reports the local consumer's `statefold_consumer_events_total`
//! and `statefold_consumer_errors_total` ([`stream::metrics`](crate::stream::metrics)),
//! labelled with its cursor's key.

/// Events acknowledged by JetStream.
pub const RELAY_EVENTS: &str = "statefold_relay_events_total";
/// Relay lag in events.
pub const RELAY_LAG_EVENTS: &str = "statefold_relay_lag_events";
/// Relay lag in seconds.
pub const RELAY_LAG_SECONDS: &str = "statefold_relay_lag_seconds";
/// Publish latency.
pub const RELAY_PUBLISH: &str = "statefold_relay_publish_seconds";
/// Pipelines started again.
pub const RELAY_RESTARTS: &str = "statefold_relay_restarts_total";
/// Failed attempts of a relay.
pub const RELAY_ERRORS: &str = "statefold_relay_errors_total";
/// Redeliveries seen by a source.
pub const REDELIVERIES: &str = "statefold_jetstream_redeliveries_total";
/// Messages pending for a source.
pub const PENDING: &str = "statefold_jetstream_pending";

/// A relay's instruments, registered once.
pub(crate) struct RelayMetrics {
    pub(crate) events: metrics::Counter,
    pub(crate) lag_events: metrics::Gauge,
    pub(crate) lag_seconds: metrics::Gauge,
    pub(crate) publish: metrics::Histogram,
    pub(crate) restarts: metrics::Counter,
    pub(crate) errors: metrics::Counter,
}

impl RelayMetrics {
    pub(crate) fn new(stream: &'static str, jetstream: &str) -> Self {
        let labels = [("stream", stream.to_owned()), ("jetstream", jetstream.to_owned())];
        Self {
            events: metrics::counter!(RELAY_EVENTS, &labels),
            lag_events: metrics::gauge!(RELAY_LAG_EVENTS, &labels),
            lag_seconds: metrics::gauge!(RELAY_LAG_SECONDS, &labels),
            publish: metrics::histogram!(RELAY_PUBLISH, &labels),
            restarts: metrics::counter!(RELAY_RESTARTS, &labels),
            errors: metrics::counter!(RELAY_ERRORS, &labels),
        }
    }
}

/// A source's own instruments.
pub(crate) struct SourceMetrics {
    pub(crate) redeliveries: metrics::Counter,
    pub(crate) pending: metrics::Gauge,
}

impl SourceMetrics {
    pub(crate) fn new(jetstream: &str, consumer: &str) -> Self {
        let labels = [("jetstream", jetstream.to_owned()), ("consumer", consumer.to_owned())];
        Self { redeliveries: metrics::counter!(REDELIVERIES, &labels), pending: metrics::gauge!(PENDING, &labels) }
    }
}
