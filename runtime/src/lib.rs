#![doc = include_str!("../../README.md")]

mod machine;
pub mod schema;
mod value;

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
