//! What a stream reader asks of its backend: reading the event log in
//! position order without skipping an event whose transaction commits late
//! (ADR 0002). Each backend answers in its own folder: SQLite by its single
//! writer, PostgreSQL by transaction fencing, MySQL by probing holes.

use super::{Backend, Conn, DbRow};
use crate::error::Error;
use crate::schema::{LogicalType, MachineDef};
use crate::stream::Position;
use crate::value::Value;
use chrono::{DateTime, Utc};
use sqlx::Pool;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// A machine's event log as one backend reads it, rendered once per reader.
#[doc(hidden)]
pub trait Log<B: Backend>: Send + Sync + Sized + 'static {
    /// A reader's own state between batches (MySQL: the holes it saw, and
    /// the connection that probes them).
    type Gaps: Send + 'static;

    /// Renders the log's queries for `def`.
    fn new(def: &'static MachineDef) -> Self;

    /// A new reader's state.
    fn gaps(&self) -> Self::Gaps;

    /// The select list of a log row: the event's columns (in
    /// [`EVENT_COLUMNS`](super::render::EVENT_COLUMNS) order), then what
    /// its position needs besides the id. History and audit read events so.
    fn columns() -> String;

    /// The types of a log row as [`columns`](Self::columns) lists them.
    fn row_types(def: &MachineDef) -> Vec<LogicalType>;

    /// The types of a log row as [`read`](Self::read) returns it.
    fn types(&self) -> &[LogicalType];

    /// The rows after `after`, at most `limit`, unread (so that a read ahead
    /// can run in a task of its own).
    fn read<'a>(
        &'a self,
        conn: &'a mut Conn<B>,
        after: Position,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DbRow<B>>, sqlx::Error>> + Send + 'a;

    /// Splits a log row as read into its position and the event's columns
    /// (in [`EVENT_COLUMNS`](super::render::EVENT_COLUMNS) order).
    fn split(row: Vec<Value>) -> (Position, Vec<Value>);

    /// The position of a log row as read.
    fn position(row: &[Value]) -> Position;

    /// Whether the batch after `rows` rows ending at `last` may be read
    /// ahead, before the reader knows it will go on from `last`.
    fn can_read_ahead(cursor: Position, rows: usize, last: Position) -> bool {
        let _ = (cursor, rows, last);
        true
    }

    /// Keeps the rows, read after `cursor`, that can be handed out now.
    fn settle<'a>(
        &'a self,
        gaps: &'a mut Self::Gaps,
        ctx: &'a Ctx<'a, B>,
        cursor: Position,
        rows: Vec<Vec<Value>>,
    ) -> impl Future<Output = Result<Settled, Error>> + Send + 'a;

    /// A position after which nothing committed from the moment this
    /// returns is missed.
    fn head<'a>(
        &'a self,
        gaps: &'a mut Self::Gaps,
        ctx: &'a Ctx<'a, B>,
    ) -> impl Future<Output = Result<Position, Error>> + Send + 'a;

    /// The last committed event: its position and time, or `None` for an
    /// empty log, whatever readers may hand out yet.
    fn end<'a>(
        &'a self,
        ctx: &'a Ctx<'a, B>,
    ) -> impl Future<Output = Result<Option<(Position, DateTime<Utc>)>, Error>> + Send + 'a;

    /// The time of the first committed event after `after`, if any.
    fn first_after<'a>(
        &'a self,
        ctx: &'a Ctx<'a, B>,
        after: Position,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, Error>> + Send + 'a;

    /// How many committed events follow `after`.
    fn count_after<'a>(
        &'a self,
        ctx: &'a Ctx<'a, B>,
        after: Position,
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a;

    /// The transactions events wait behind, for the operator: the session
    /// holding the PostgreSQL fence, the MySQL transactions writing rows.
    fn blockers<'a>(&'a self, ctx: &'a Ctx<'a, B>) -> impl Future<Output = Result<Vec<Blocker>, Error>> + Send + 'a;

    /// Whether `position` can be a position of this backend's logs; why not, if it cannot.
    ///
    /// # Errors
    /// What is wrong with it.
    fn check(position: Position) -> Result<(), String>;

    /// Requirements checked when a reader opens from `start` (MySQL's head
    /// needs the `PROCESS` privilege).
    fn check_start<'a>(
        &'a self,
        ctx: &'a Ctx<'a, B>,
        head: bool,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        let _ = (ctx, head);
        std::future::ready(Ok(()))
    }
}

/// What a reader brings to its log's queries.
#[doc(hidden)]
pub struct Ctx<'a, B: Backend> {
    /// The store's pool.
    pub pool: &'a Pool<B::Db>,
    /// The machine's name, for errors.
    pub machine: &'static str,
    /// How soon to look again at held-back events.
    pub gap_retry: Duration,
    /// MySQL: how long a hole must be known before a probe that finds
    /// nothing proves it permanent.
    pub gap_grace: Duration,
}

impl<B: Backend> Ctx<'_, B> {
    /// A database error as the reader reports it.
    pub(crate) fn fail(&self, error: sqlx::Error) -> Error {
        super::failure::<B>(error, self.machine, None)
    }
}

/// The rows a reader can hand out, and whether others wait behind a
/// transaction still running.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Settled {
    /// The rows, in position order, without a gap.
    pub rows: Vec<Vec<Value>>,
    /// Committed events wait behind a running transaction, which may end
    /// by rolling back and so wake nobody: look again soon.
    pub held_back: bool,
}

/// A transaction that events wait behind, as an operator would look it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// How the database names it: `pid 4242` (PostgreSQL), `prepared
    /// transaction 'gid'`, `thread 17` (MySQL).
    pub who: String,
    /// What it is doing: its state, since when, its last statement.
    pub detail: String,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.who, self.detail)
    }
}

/// The statements of a log ordered by event id alone (SQLite, MySQL).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) struct IdOrder {
    pub(crate) types: Vec<LogicalType>,
    /// Binds: id, limit.
    pub(crate) read: String,
    /// No binds.
    pub(crate) end: String,
    /// Binds: id.
    pub(crate) first_after: String,
    /// Binds: id.
    pub(crate) count_after: String,
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
impl IdOrder {
    pub(crate) fn new<B: Backend>(def: &MachineDef) -> Self {
        use super::render::{list, EVENT_COLUMNS};
        let q = B::quote_ident;
        let (events, id, at) = (q(def.events_table), q("id"), q("created_at"));
        let (p1, p2) = (B::placeholder(1), B::placeholder(2));
        Self {
            types: super::render::event_types(def),
            read: format!(
                "SELECT {} FROM {events} WHERE {id} > {p1} ORDER BY {id} LIMIT {p2}",
                list::<B>(EVENT_COLUMNS)
            ),
            end: format!("SELECT {id}, {at} FROM {events} ORDER BY {id} DESC LIMIT 1"),
            first_after: format!("SELECT {at} FROM {events} WHERE {id} > {p1} ORDER BY {id} LIMIT 1"),
            count_after: format!("SELECT COUNT(*) FROM {events} WHERE {id} > {p1}"),
        }
    }
}

/// The position of a row whose first column is the event id.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn id_position(row: &[Value]) -> Position {
    match row.first() {
        Some(Value::I64(id)) => Position::new(0, *id),
        _ => Position::new(0, i64::MAX),
    }
}

/// Reads a single integer (a count), 0 when absent.
pub(crate) fn count(rows: &[Vec<Value>]) -> u64 {
    match rows.first().and_then(|row| row.first()) {
        Some(Value::I64(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

/// Reads a single timestamp, if any.
pub(crate) fn time(rows: &[Vec<Value>]) -> Option<DateTime<Utc>> {
    match rows.first().and_then(|row| row.first()) {
        Some(Value::Timestamp(at)) => Some(*at),
        _ => None,
    }
}

/// Positions of id-ordered logs carry no transaction.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn check_id_position(backend: &str, position: Position) -> Result<(), String> {
    if position.tx() == 0 {
        Ok(())
    } else {
        Err(format!(
            "`{position}` names a transaction, as PostgreSQL positions do; a {backend} position is an event id alone"
        ))
    }
}
