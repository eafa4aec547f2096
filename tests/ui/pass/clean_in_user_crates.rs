#![deny(warnings, missing_docs, unreachable_pub, rust_2018_idioms)]
//! Generated code raises no warning, and the user's own items named like
//! statefold's or the prelude's do not disturb it.

use statefold::Machine;

/// Not `statefold::Record`.
pub struct Record;
/// Not `statefold::Value`.
pub struct Value;
/// Not `core::result::Result`.
pub type Result<T> = std::result::Result<T, ()>;
/// Not `std::vec::Vec`.
pub struct Vec;
/// Not `serde_json`.
pub mod serde_json {}
/// Not `core`.
pub mod core {}

/// A document in review.
#[derive(Machine, Clone, Debug, PartialEq)]
pub enum Document {
    /// Written.
    #[initial]
    Drafted {
        /// Its title.
        title: String,
    },
    /// Approved by a reviewer.
    #[from(Drafted)]
    Approved {
        /// Who approved it.
        reviewer: String,
    },
}

fn main() {
    let _ = (Record, Value, Vec, Document::DEF);
}
