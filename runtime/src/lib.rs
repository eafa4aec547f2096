#![doc = include_str!("../../README.md")]

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod backend;
#[cfg(all(feature = "cli", any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
pub mod cli;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod effects;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod envelope;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod error;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod fate;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod fold;
mod machine;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod migrate;
pub mod schema;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod store;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod stream;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod testing;
mod value;

#[cfg(feature = "mysql")]
pub use backend::MySql;
#[cfg(feature = "postgres")]
pub use backend::Postgres;
#[cfg(feature = "sqlite")]
pub use backend::Sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use backend::{Backend, Blocker};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use effects::Effects;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use envelope::Envelope;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use error::Error;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use fate::{Fate, FaultPoint};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use fold::{AuditReport, Mismatch, Problem};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use store::{NewRecord, Page, Repair, RepairOptions, RepairReport, Store, Tx};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use stream::{
    Backoff, Consumer, EventStream, Handler, HandlerError, InvalidPosition, Position, Projection, Start, StreamOptions,
};

pub use machine::{
    ColumnError, Encoded, Enters, Event, Initial, Machine, Metadata, Record, Row, RowHeader, Status, Transition,
    UnknownStatus,
};
pub use schema::{ColumnDef, Edge, IdDef, LogicalType, MachineDef, StateDef};
pub use value::{json_from_value, json_to_value, Column, Value, ValueError};

/// Derives [`Machine`] for an annotated enum. See the crate docs.
pub use statefold_macros::Machine;

/// Paths used by generated code. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use chrono;
    pub use serde;
    pub use serde_json;
    pub use uuid;
}
