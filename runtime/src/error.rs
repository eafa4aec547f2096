//! The one error type of the persistence layer.

use crate::fate::FaultPoint;

/// Why a store operation failed. A failed operation changes nothing, except
/// [`Error::InjectedFault`] at [`FaultPoint::AfterCommit`], whose write is durable.
///
/// Each message says what happened, to which record, and what to do.
///
/// ```
/// let error = statefold::Error::NotFound { machine: "Order", id: "7".into() };
/// assert_eq!(error.to_string(), "no Order record has id `7`: check the id, or insert the record first");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No record has this id.
    #[error("no {machine} record has id `{id}`: check the id, or insert the record first")]
    NotFound {
        /// The machine's name.
        machine: &'static str,
        /// The id looked for.
        id: String,
    },

    /// The record changed since it was read: its status or version is not the
    /// expected one, so the write was refused (optimistic concurrency).
    #[error(
        "{machine} record `{id}` changed since it was read: expected {expected_status} at version \
         {expected_version}, found {actual_status} at version {actual_version}; load it again and \
         decide on its current state"
    )]
    Conflict {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// The state the write expected (variant name).
        expected_status: &'static str,
        /// The version the write expected.
        expected_version: i64,
        /// The record's actual state (variant name, or the stored name if unknown).
        actual_status: String,
        /// The record's actual version.
        actual_version: i64,
    },

    /// The machine declares no edge between these states.
    #[error("{machine} record `{id}` cannot go from {from} to {to}: {}", sources(to, valid))]
    InvalidTransition {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// The record's current state (variant name).
        from: &'static str,
        /// The requested state (variant name).
        to: &'static str,
        /// The states `to` may be entered from, per `#[from(..)]`.
        valid: Vec<&'static str>,
    },

    /// A record was to be inserted in a state that is not `#[initial]`.
    #[error("{machine} records cannot start in {state}: insert them in an #[initial] state ({})", initial.join(", "))]
    NotInitial {
        /// The machine's name.
        machine: &'static str,
        /// The requested state (variant name).
        state: &'static str,
        /// The machine's initial states.
        initial: Vec<&'static str>,
    },

    /// The machine's records are keyed by the caller, and no id was given.
    #[error(
        "{machine} records are keyed by the caller (`#[machine(id = ..)]`): insert them with \
         `Store::insert_with_id`"
    )]
    IdRequired {
        /// The machine's name.
        machine: &'static str,
    },

    /// The database assigns the machine's ids, and an id was given.
    #[error("{machine} record ids are assigned by the database: insert with `Store::insert`, without an id")]
    IdGenerated {
        /// The machine's name.
        machine: &'static str,
    },

    /// A unique constraint rejected the write: the id, or a value of a
    /// uniquely indexed column, is taken.
    #[error("{machine}: {} already exists ({message}); choose another key, or load the existing record", record(id.as_deref()))]
    Duplicate {
        /// The machine's name.
        machine: &'static str,
        /// The id written, if known.
        id: Option<String>,
        /// The database's message, naming the constraint.
        message: String,
    },

    /// A table the store needs does not exist.
    #[error("table `{table}` does not exist: create the tables with `Store::create_tables`, or run the migrations")]
    MissingTable {
        /// The missing table.
        table: String,
    },

    /// The database URL is not one this backend accepts.
    #[error("invalid {backend} URL: {reason}")]
    InvalidUrl {
        /// The backend's name.
        backend: &'static str,
        /// What is wrong with it. The URL itself is left out: it may hold a password.
        reason: String,
    },

    /// A stored event's payload no longer matches its state's fields.
    #[error(
        "event at position {position} of {machine} record `{id}` cannot be decoded: {message}; the stored \
         payload no longer matches the declaration: restore the field it needs (with `#[serde(default)]` \
         if it was added later)"
    )]
    Decode {
        /// The machine's name.
        machine: &'static str,
        /// The event's position.
        position: crate::stream::Position,
        /// The record's id.
        id: String,
        /// serde's message.
        message: String,
    },

    /// A stored event was written at a version of its state's event newer
    /// than this code declares: a newer release wrote it.
    #[error(
        "event at position {position} of {machine} record `{id}` is version {version} of `{state}`, but this code reads up to version {current}: run the release that declares `#[event(version = {version})]` (rolled back code cannot read what the newer one wrote)"
    )]
    NewerEvent {
        /// The machine's name.
        machine: &'static str,
        /// The event's position.
        position: crate::stream::Position,
        /// The record's id.
        id: String,
        /// The state (variant name).
        state: &'static str,
        /// The version the event was stored at.
        version: u32,
        /// The newest version this code reads.
        current: u32,
    },

    /// A stored row does not fit the machine's row type (edited by hand, or
    /// written by another version of the declaration).
    #[error("{machine} record `{id}` has a row that cannot be read: {message}; run `Store::audit` to compare it with its events")]
    CorruptRow {
        /// The machine's name.
        machine: &'static str,
        /// The record's id.
        id: String,
        /// What does not fit.
        message: String,
    },

    /// An event could not be turned into JSON (a `#[column(json)]` map with non-string keys).
    #[error("{machine}: the event cannot be stored as JSON: {source}")]
    Encode {
        /// The machine's name.
        machine: &'static str,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },

    /// The database cannot store a value as given, so it refused the write.
    #[error("{backend} cannot store a value of this write ({message}); PostgreSQL text and JSON cannot hold NUL characters (\\0): remove them")]
    Unrepresentable {
        /// The backend's name.
        backend: &'static str,
        /// The database's message.
        message: String,
    },

    /// [`Fate`](crate::Fate) injected a fault on purpose.
    #[error("fault injected {point}{}", match point {
        FaultPoint::AfterCommit => ": the write is durable",
        FaultPoint::AfterSend => ": the message was sent and will be sent again",
        FaultPoint::BeforeSend => ": nothing was sent; it will be retried",
        FaultPoint::BeforePublish => ": the event was not published; the relay publishes it again",
        FaultPoint::AfterPublishAck => ": JetStream stored the event; the relay goes on after it",
        _ => ": nothing was written",
    })]
    InjectedFault {
        /// Where.
        point: FaultPoint,
    },

    /// A consumer's handler failed where it cannot be retried (the reset of a rebuild).
    #[error("consumer `{consumer}`: its handler failed: {message}; nothing was changed: fix the cause and run again")]
    Handler {
        /// The consumer's key.
        consumer: String,
        /// The handler's error.
        message: String,
    },

    /// MySQL: the head of a stream could not be settled in time, because
    /// transactions that may hold earlier event ids kept running (or the
    /// server's transaction list kept being read by others too often to
    /// refresh). Nothing was read; try again later.
    #[error(
        "{machine}: the stream's head is not settled after {waited:?}: {}; \
         do not take the head while holding a write transaction, and look for long transactions on the server",
        running.map_or_else(
            || "InnoDB's list of transactions was never read fresh (it is read too often)".to_owned(),
            |n| format!("{n} transaction(s) that wrote rows are still running")
        )
    )]
    HeadNotSettled {
        /// The machine.
        machine: &'static str,
        /// How long it waited.
        waited: std::time::Duration,
        /// How many writing transactions were still running; `None` when
        /// no fresh copy of the list could be read.
        running: Option<usize>,
    },

    /// The database's tables do not match the declaration: the code runs
    /// ahead of (or behind) its migrations.
    #[error(
        "{machine}: the database's tables do not match the declaration:\n{}\napply the migrations \
         generated from this code (`<your binary> migrations apply`), or deploy the code that matches them",
        problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    )]
    SchemaMismatch {
        /// The machine.
        machine: &'static str,
        /// Each missing table, column or index.
        problems: Vec<String>,
    },

    /// The database user lacks a privilege that an operation needs.
    #[error(
        "{backend}: {what} needs the `{privilege}` privilege, which this database user lacks: grant it \
         (`GRANT {privilege} ON *.* TO ..`), or start streams after a saved position or at the \
         beginning (`Start::After(..)`, `Start::Beginning`) instead of at the head"
    )]
    PrivilegeRequired {
        /// The backend's name.
        backend: &'static str,
        /// The privilege.
        privilege: &'static str,
        /// What needs it.
        what: &'static str,
    },

    /// A stream was asked to start after a position that is not one of
    /// this backend's logs (see [`Position`](crate::Position)).
    #[error("{machine}: cannot start a {backend} stream after this position: {reason}")]
    InvalidPosition {
        /// The machine.
        machine: &'static str,
        /// The backend's name.
        backend: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// An effect was built from bad input (a payload that does not
    /// serialise, a URL that does not parse, an empty topic): running the
    /// effects wrote nothing.
    #[error("invalid effect: {what}: {reason}; fix the handler that built it (nothing was written)")]
    InvalidEffect {
        /// Which effect: `message to "topic"`, `POST request`.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Effects transition records of a machine whose store the runner does not have.
    #[error(
        "the effects transition {machine} records, but the runner has no store of {machine}: \
         register one with `Runner::with_store` (nothing was written)"
    )]
    UnregisteredMachine {
        /// The machine's name.
        machine: &'static str,
    },

    /// An idempotency key that cannot be stored: empty, or longer than 255 bytes.
    #[error("invalid idempotency key: {reason}; use a non-empty key of at most 255 bytes, e.g. a UUID")]
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },

    /// A stored outcome or outbox entry cannot be read back (written by
    /// another version of the library, or edited by hand).
    #[error(
        "{what} cannot be read: {message}; it was written by another version or edited by hand: remove or fix the row"
    )]
    CorruptEffect {
        /// What: `outcome of key "k"`, `outbox row 42`.
        what: String,
        /// What does not fit.
        message: String,
    },

    /// A remote event source (another service's log, over gRPC) failed:
    /// unreachable, refused the call, or broke the stream. Credentials are
    /// never part of it.
    #[error("remote log `{machine}` at {endpoint}: {message}{}", if *retryable { "; retrying" } else { "" })]
    Remote {
        /// The machine, as the remote service names it.
        machine: String,
        /// Where the service is.
        endpoint: String,
        /// What went wrong, with the status code (`UNAUTHENTICATED`, `UNAVAILABLE`, ..).
        message: String,
        /// Whether trying again may succeed (the service restarting, a
        /// network error); not for a refused token or an unknown machine.
        retryable: bool,
    },

    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn sources(to: &str, valid: &[&str]) -> String {
    if valid.is_empty() {
        format!("no state leads to {to}: records only start in it")
    } else {
        format!("valid sources of {to} are: {}", valid.join(", "))
    }
}

fn record(id: Option<&str>) -> String {
    id.map_or_else(|| "a record with the same unique value".to_owned(), |id| format!("record `{id}`"))
}
