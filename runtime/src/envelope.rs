//! The one event type: an event as stored and as streams deliver it.

use crate::machine::{Machine, Metadata};
use crate::stream::Position;
use chrono::{DateTime, Utc};

/// One event as stored and as streams deliver it: where it is in its
/// machine's log, which record it changed, and what happened.
/// [`Store::history`](crate::Store::history) returns them, and so do streams.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<M: Machine> {
    /// Its position in the log; streams deliver increasing positions.
    pub position: Position,
    /// The record it changed.
    pub record_id: M::Id,
    /// The event, as the machine's enum, in its state's current shape.
    pub event: M,
    /// The version its payload was stored at; one below its state's
    /// current version was upcast when read (`#[event(upcast(..))]`).
    pub schema_version: u32,
    /// The state it left (`None` for the event creating the record).
    pub from: Option<M::Status>,
    /// The state it entered, which is also its kind.
    pub to: M::Status,
    /// The record's version after it (1 for the creating event).
    pub version: i64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Who and why.
    pub metadata: Metadata,
}
