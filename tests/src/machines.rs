//! The machines the behaviour suite persists.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use statefold::Machine;
use std::collections::BTreeMap;
use uuid::Uuid;

/// An order's life: database-assigned ids, the README's machine.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "orders")]
pub enum Order {
    /// The customer placed the order.
    #[initial]
    Placed {
        /// Who ordered.
        #[column(index)]
        customer: String,
        /// The total, in cents.
        amount_cents: i64,
    },
    /// The payment went through.
    #[from(Placed)]
    Paid {
        /// The payment provider's reference.
        payment_ref: String,
    },
    /// The parcel left.
    #[from(Paid)]
    Shipped {
        /// The carrier's tracking number.
        tracking: String,
    },
    /// Called off before shipping.
    #[from(Placed, Paid)]
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The parcel arrived.
    #[from(Shipped)]
    Delivered,
}

/// A support ticket keyed by a caller-supplied UUID.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "tickets", id = uuid::Uuid)]
pub enum Ticket {
    /// Opened by a customer.
    #[initial]
    #[from(Closed)]
    Open {
        /// What it is about.
        title: String,
    },
    /// Resolved.
    #[from(Open)]
    Closed {
        /// How.
        resolution: String,
    },
}

/// A lamp whose `On` may be entered again from `On` (a self-loop: a new wattage).
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "lamps")]
pub enum Lamp {
    /// Switched off.
    #[initial]
    #[from(On)]
    Off,
    /// Switched on, or its bulb changed.
    #[from(Off, On)]
    On {
        /// The bulb's power.
        watts: i32,
    },
}

/// An account keyed by a caller-supplied string.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "accounts", id = String)]
pub enum Account {
    /// In use (stored as `enabled` by an earlier release).
    #[initial]
    #[from(Frozen)]
    #[state(was = "enabled")]
    Active {
        /// Where to write.
        email: String,
    },
    /// Blocked for a while.
    #[from(Active)]
    Frozen {
        /// Why.
        reason: String,
    },
}

/// A JSON column's structured value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// Some text.
    pub label: String,
    /// Some numbers.
    pub values: Vec<f64>,
    /// Nested and optional.
    pub parent: Option<Box<Detail>>,
}

/// One field of every column type, to test that each round-trips.
// One wide state is the point of this machine.
#[allow(clippy::large_enum_variant)]
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "samples")]
pub enum Sample {
    /// Every type at once.
    #[initial]
    Taken {
        /// `i8`.
        tiny: i8,
        /// `i16`.
        small: i16,
        /// `i32`.
        int: i32,
        /// `i64`.
        big: i64,
        /// `u8`.
        ubyte: u8,
        /// `u16`.
        ushort: u16,
        /// `u32`.
        uint: u32,
        /// `f32`.
        single: f32,
        /// `f64`.
        double: f64,
        /// `bool`.
        flag: bool,
        /// `String`.
        text: String,
        /// `Vec<u8>`.
        bytes: Vec<u8>,
        /// A time.
        at: DateTime<Utc>,
        /// A uuid.
        uuid: Uuid,
        /// An optional string.
        maybe_text: Option<String>,
        /// An optional integer.
        maybe_int: Option<i64>,
        /// A JSON struct.
        #[column(json)]
        detail: Detail,
        /// A JSON map.
        #[column(json)]
        tags: BTreeMap<String, i64>,
        /// An optional JSON struct.
        #[column(json)]
        maybe_detail: Option<Detail>,
    },
    /// Checked later: sets a column that was `NULL`, keeps the others.
    #[from(Taken)]
    Checked {
        /// A note.
        note: Option<String>,
        /// Replaces the text.
        text: String,
    },
}
