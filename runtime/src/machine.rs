//! The traits `#[derive(Machine)]` implements, and the typed handles built on them.

use crate::schema::{MachineDef, StateDef};
use crate::value::{Value, ValueError};
use chrono::{DateTime, Utc};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;

/// An entity's life cycle, declared as an annotated enum.
///
/// Each variant is a state and also the event that enters it. Implemented by
/// `#[derive(Machine)]`; see the crate docs for the declaration syntax.
pub trait Machine: Sized + Send + Sync + 'static {
    /// The fieldless status enum (`OrderStatus`).
    type Status: Status<Machine = Self>;
    /// The record key: `i64` unless `#[machine(id = ..)]` says otherwise.
    type Id: Key;
    /// The row struct (`OrderRow`).
    type Row: Row<Machine = Self>;
    /// A loaded record as the typed handle for its state (`OrderState`).
    type State;

    /// The machine's description: tables, states, edges, columns, diagrams.
    const DEF: &'static MachineDef;

    /// The state this event enters.
    fn status(&self) -> Self::Status;

    /// The event's JSON payload and the columns it sets.
    ///
    /// # Errors
    /// When a `#[column(json)]` field cannot be represented as JSON.
    fn encode(&self) -> Result<Encoded, serde_json::Error>;

    /// Rebuilds an event from its status and stored JSON payload.
    ///
    /// # Errors
    /// When the payload does not match the state's fields.
    fn decode(status: Self::Status, payload: &str) -> Result<Self, serde_json::Error>;

    /// Turns a payload of `status`'s event stored at version `from` into
    /// version `from + 1`, by the upcaster `#[event(upcast(..))]` declares
    /// for that step (a payload of the current version is returned as is).
    ///
    /// # Errors
    /// The upcaster's error, as text.
    fn upcast(status: Self::Status, from: u32, payload: serde_json::Value) -> Result<serde_json::Value, String>;

    /// Turns a loaded row into the typed handle for its current state.
    fn into_state(row: Self::Row) -> Self::State;
}

/// Runs one upcaster of `#[event(upcast(..))]`; its signature is the one
/// the attribute requires, so a function of another is reported on its name.
/// Used by the derive; not public API.
#[doc(hidden)]
pub fn __upcast<E: fmt::Display>(
    upcaster: fn(serde_json::Value) -> Result<serde_json::Value, E>,
    payload: serde_json::Value,
) -> Result<serde_json::Value, String> {
    upcaster(payload).map_err(|e| e.to_string())
}

/// A type that can key a machine's records: `i64`, the default, which the
/// database assigns; or, with `#[machine(id = ..)]`, `uuid::Uuid`, `String`
/// or another integer type, which callers supply.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot key a machine's records",
    label = "not a key type",
    note = "keys are `i64` (the default: the database assigns them) or, with `#[machine(id = ..)]`, `uuid::Uuid`, `String` or an integer type up to `i64`"
)]
pub trait Key: crate::Column + Clone + fmt::Debug + fmt::Display + PartialEq + Send + Sync + 'static {}

macro_rules! keys {
    ($($t:ty),*) => {$(
        #[diagnostic::do_not_recommend]
        impl Key for $t {}
    )*};
}
keys!(i8, i16, i32, i64, u8, u16, u32, String, uuid::Uuid);

/// A machine whose record ids the database assigns (no `#[machine(id = ..)]`).
///
/// Implemented by the derive for those machines only, so that
/// [`Store::insert`](crate::Store::insert), which passes no key, does not
/// compile for a machine whose keys the caller supplies.
#[diagnostic::on_unimplemented(
    message = "`{Self}` records are keyed by the caller: insert them with `insert_with_id`",
    label = "`{Self}` has `#[machine(id = ..)]`, so this insert needs a key",
    note = "`insert` is for machines whose ids the database assigns; call `store.insert_with_id(id, event)`"
)]
pub trait GeneratedId: Machine {}

/// The fieldless status enum of a machine, with stable database names.
///
/// Text for people (errors, logs, `Display`) names a status by its variant,
/// [`name`](Status::name) (`Paid`), as the declaration and the errors do. The
/// name stored in the `status` column is [`db_name`](Status::db_name) (`paid`),
/// for SQL you write by hand; `FromStr` accepts both.
pub trait Status: Copy + Eq + Hash + fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// The machine this status belongs to.
    type Machine: Machine<Status = Self>;
    /// Every status, in declaration order.
    const ALL: &'static [Self];

    /// The position of this status in [`Status::ALL`] and in `DEF.states`.
    fn index(self) -> usize;

    /// The variant's name, e.g. `Paid`: what `Display` prints, and what errors say.
    fn name(self) -> &'static str {
        self.def().name
    }

    /// The name stored in the `status` column, e.g. `paid` (also `as_str`).
    fn db_name(self) -> &'static str {
        self.def().db_name
    }

    /// The state's description.
    fn def(self) -> &'static StateDef {
        &<Self::Machine as Machine>::DEF.states[self.index()]
    }

    /// The status stored under this database name (current or earlier name).
    fn from_db_name(name: &str) -> Option<Self> {
        let def = <Self::Machine as Machine>::DEF;
        let state = def.state_by_db_name(name)?;
        def.states.iter().position(|s| std::ptr::eq(s, state)).map(|i| Self::ALL[i])
    }
}

/// A database name that is no status of the machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a status of `{machine}`")]
pub struct UnknownStatus {
    /// The machine's name.
    pub machine: &'static str,
    /// The name that was not found.
    pub value: String,
}

/// The typed event struct of one state (`OrderPaid`), convertible into the machine's enum.
pub trait Event: Clone + fmt::Debug + Send + Sync + 'static + Into<Self::Machine> {
    /// The machine the event belongs to.
    type Machine: Machine;
    /// The state the event enters.
    const STATUS: <Self::Machine as Machine>::Status;

    /// The event's JSON payload and the columns it sets.
    ///
    /// # Errors
    /// When a `#[column(json)]` field cannot be represented as JSON.
    fn encode(&self) -> Result<Encoded, serde_json::Error>;
}

/// An event that may create a record: its state is `#[initial]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot create a record: its state is not `#[initial]`",
    label = "not an initial state",
    note = "records are inserted in an `#[initial]` state, then moved by transitions"
)]
pub trait Initial: Event {}

/// `Self` may be entered from state `S` (the marker type of `S` is its event struct).
///
/// The derive implements this for every declared `#[from(..)]` edge; for
/// every other pair of the machine's states, only under a bound nothing
/// satisfies, whose message names both states. A transition along any
/// other edge does not compile.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be entered from `{S}`",
    label = "no `#[from(..)]` edge leads here from that state",
    note = "a state may be entered only from the states of its own machine listed in its `#[from(..)]`"
)]
pub trait Enters<S>: Event {}

/// An event in storable form: its JSON payload and the columns it sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The payload stored in the events table.
    pub payload: serde_json::Value,
    /// `(column, value)` for each field of the state, in declaration order.
    pub columns: Vec<(&'static str, Value)>,
}

/// The row struct of a machine (`OrderRow`): bookkeeping columns plus one field per column.
pub trait Row: Clone + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The machine the row belongs to.
    type Machine: Machine<Row = Self>;

    /// The record's key.
    fn id(&self) -> &<Self::Machine as Machine>::Id;
    /// The record's current status.
    fn status(&self) -> <Self::Machine as Machine>::Status;
    /// The number of events applied to the record (1 after insert).
    fn version(&self) -> i64;
    /// When the record was inserted.
    fn created_at(&self) -> DateTime<Utc>;
    /// When the record last changed.
    fn updated_at(&self) -> DateTime<Utc>;
    /// The payload columns, in `DEF.columns` order.
    fn columns(&self) -> Result<Vec<Value>, serde_json::Error>;
    /// Builds a row from its bookkeeping header and payload columns in `DEF.columns` order.
    ///
    /// # Errors
    /// When a column value does not fit its field.
    fn from_parts(header: RowHeader<Self::Machine>, columns: Vec<Value>) -> Result<Self, ColumnError>;
}

/// The bookkeeping columns every records table has.
#[derive(Debug, Clone, PartialEq)]
pub struct RowHeader<M: Machine> {
    /// The record's key.
    pub id: M::Id,
    /// Its current status.
    pub status: M::Status,
    /// The number of events applied to it.
    pub version: i64,
    /// When it was inserted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A column value that does not fit the row's field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}`: {source}")]
pub struct ColumnError {
    /// The column's name.
    pub column: &'static str,
    /// What was wrong with it.
    pub source: ValueError,
}

/// A record known to be in state `S` (whose marker is the state's event struct).
///
/// Get one from the store or by matching a loaded record's `State`. Its
/// [`transition`](Record::transition) method only accepts events whose state
/// lists `S` in `#[from(..)]`.
pub struct Record<M: Machine, S> {
    row: M::Row,
    state: PhantomData<fn() -> S>,
}

impl<M: Machine, S> Record<M, S> {
    /// Wraps a row whose status is `S`. Used by generated code and the store,
    /// which check the status first.
    #[doc(hidden)]
    pub fn __from_row(row: M::Row) -> Self {
        Self { row, state: PhantomData }
    }

    /// The record's key.
    pub fn id(&self) -> &M::Id {
        self.row.id()
    }

    /// The number of events applied to the record.
    pub fn version(&self) -> i64 {
        self.row.version()
    }

    /// The record's status (always the state `S`).
    pub fn status(&self) -> M::Status {
        self.row.status()
    }

    /// The loaded row.
    pub fn row(&self) -> &M::Row {
        &self.row
    }

    /// The loaded row, by value.
    pub fn into_row(self) -> M::Row {
        self.row
    }

    /// Prepares the transition into `event`'s state. Only compiles along a
    /// declared edge. The result is data: hand it to a store to apply it.
    pub fn transition<E>(self, event: E) -> Transition<M, E>
    where
        E: Enters<S> + Event<Machine = M>,
    {
        Transition {
            id: self.row.id().clone(),
            from: self.row.status(),
            version: self.row.version(),
            event,
            metadata: Metadata::default(),
        }
    }
}

impl<M: Machine, S> Clone for Record<M, S> {
    fn clone(&self) -> Self {
        Self::__from_row(self.row.clone())
    }
}

impl<M: Machine, S> fmt::Debug for Record<M, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Record").field(&self.row).finish()
    }
}

impl<M: Machine, S> PartialEq for Record<M, S> {
    fn eq(&self, other: &Self) -> bool {
        self.row == other.row
    }
}

/// A typed transition of one record, ready to be applied: the record's key,
/// the status and version it was read at, the event, and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition<M: Machine, E> {
    /// The record's key.
    pub id: M::Id,
    /// The status the record had when read.
    pub from: M::Status,
    /// The version the record had when read; the write succeeds only if it still has it.
    pub version: i64,
    /// The event entering the next state.
    pub event: E,
    /// Who and why, stored with the event.
    pub metadata: Metadata,
}

impl<M: Machine, E> Transition<M, E> {
    /// Attaches metadata to the event.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Context stored with each event, all optional.
///
/// ```
/// let meta = statefold::Metadata::new().actor("ada").trace_id("4bf92f35");
/// assert_eq!(meta.actor.as_deref(), Some("ada"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// Who caused the event (a user, a service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The trace the event was written under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Links events caused by one request or command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The idempotency key of the command that wrote the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the actor.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the trace id.
    #[must_use]
    pub fn trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.trace_id = Some(trace_id.into());
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}
