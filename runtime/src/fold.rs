//! Event sourcing on the stored data: a record rebuilt from its events (the
//! fold), and the audit comparing every row with the fold of its events.

use crate::envelope::Envelope;
use crate::machine::{Machine, Status};
use crate::schema::MachineDef;
use crate::stream::Position;
use crate::value::{Column, Value};
use chrono::{DateTime, SubsecRound, Utc};
use std::fmt;

/// A value at the precision every backend stores: timestamps to the microsecond.
pub(crate) fn normalize(value: Value) -> Value {
    match value {
        Value::Timestamp(at) => Value::Timestamp(at.trunc_subsecs(6)),
        other => other,
    }
}

/// The values of a row's columns after a sequence of events: each event
/// overwrites the columns its state sets.
pub(crate) struct Fold {
    columns: Vec<Value>,
}

impl Fold {
    pub(crate) fn new(def: &MachineDef) -> Self {
        Self { columns: vec![Value::Null; def.columns.len()] }
    }

    /// Applies one event.
    ///
    /// # Errors
    /// serde's message when the event cannot be encoded again.
    pub(crate) fn apply<M: Machine>(&mut self, event: &M) -> Result<(), serde_json::Error> {
        for (name, value) in event.encode()?.columns {
            if let Some(i) = M::DEF.column_index(name) {
                self.columns[i] = normalize(value);
            }
        }
        Ok(())
    }

    pub(crate) fn into_columns(self) -> Vec<Value> {
        self.columns
    }
}

/// The one checked fold, used by [`Store::as_of`](crate::Store::as_of) and
/// the audit alike: the values of the row a record had after `events` (in
/// version order; header first, then every column), or `None` without
/// events.
///
/// # Errors
/// [`Problem::History`] when the events do not form a history: versions
/// that do not follow each other from 1, an event that leaves another state
/// than the previous one entered, or one that cannot be encoded again.
pub(crate) fn fold<M: Machine>(events: &[Envelope<M>]) -> Result<Option<Vec<Value>>, Problem> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(None) };
    let mut fold = Fold::new(M::DEF);
    let mut previous: Option<M::Status> = None;
    for (event, expected) in events.iter().zip(1_i64..) {
        let broken = |reason: String| Problem::History { position: event.position, reason };
        if event.version != expected {
            return Err(broken(format!("version {} where {expected} was expected", event.version)));
        }
        if event.from != previous {
            let name = |s: Option<M::Status>| s.map_or("nothing", |s| s.name());
            return Err(broken(format!("it leaves {} but the record was in {}", name(event.from), name(previous))));
        }
        fold.apply(&event.event).map_err(|e| broken(format!("payload does not encode: {e}")))?;
        previous = Some(event.to);
    }
    let mut values = vec![
        first.record_id.to_value(),
        Value::Text(last.to.db_name().to_owned()),
        Value::I64(last.version),
        Value::Timestamp(first.created_at),
        Value::Timestamp(last.created_at),
    ];
    values.extend(fold.into_columns());
    Ok(Some(values))
}

/// The result of [`Store::audit`](crate::Store::audit): every record's row
/// compared with the fold of its events.
///
/// ```
/// let report = statefold::AuditReport::default();
/// assert!(report.is_clean());
/// assert_eq!(report.to_string(), "audit: 0 records, 0 events, no mismatch");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct AuditReport {
    /// Records checked (rows, plus event streams without a row).
    pub records: u64,
    /// Events folded.
    pub events: u64,
    /// Every difference found, in record order.
    pub mismatches: Vec<Mismatch>,
}

impl AuditReport {
    /// Whether every row equals the fold of its events.
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        write!(f, "audit: {}, {}, ", plural(self.records, "record"), plural(self.events, "event"))?;
        match self.mismatches.len() {
            0 => f.write_str("no mismatch"),
            n => {
                write!(f, "{n} mismatch{}", if n == 1 { "" } else { "es" })?;
                self.mismatches.iter().try_for_each(|m| write!(f, "\n  {m}"))
            }
        }
    }
}

/// One difference between a record's row and its events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Mismatch {
    /// The record's id, as text.
    pub record: String,
    /// What differs.
    pub problem: Problem,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record `{}`: {}", self.record, self.problem)
    }
}

/// What differs between a row and the fold of its events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    /// Events exist, but no row.
    MissingRow {
        /// How many events the record has.
        events: u64,
    },
    /// A row exists, but no event.
    MissingEvents,
    /// The row's status is not the state the last event entered.
    Status {
        /// The row's stored status.
        row: String,
        /// The state the events lead to (stored name).
        folded: String,
    },
    /// The row's version is not its number of events.
    Version {
        /// The row's version.
        row: i64,
        /// The last event's version.
        folded: i64,
    },
    /// A column's value differs.
    Column {
        /// The column (`created_at` and `updated_at` included).
        column: &'static str,
        /// The row's value.
        row: Value,
        /// The value the events give.
        folded: Value,
    },
    /// The events themselves do not form a valid history (a version gap, a
    /// `from_status` that is not the previous state, a payload that no longer
    /// decodes), so they cannot be folded.
    History {
        /// The first offending event's position.
        position: Position,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingRow { events } => write!(f, "{events} events but no row"),
            Self::MissingEvents => f.write_str("a row but no event"),
            Self::Status { row, folded } => write!(f, "status is `{row}` in the row but `{folded}` by its events"),
            Self::Version { row, folded } => write!(f, "version is {row} in the row but {folded} by its events"),
            Self::Column { column, row, folded } => {
                write!(f, "column `{column}` is {} in the row but {} by its events", show(row), show(folded))
            }
            Self::History { position, reason } => write!(f, "event at position {position}: {reason}"),
        }
    }
}

/// A value as written in reports: text quoted, bytes in hex, `NULL`.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Bool(v) => v.to_string(),
        Value::I32(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::F64(v) => v.to_string(),
        Value::Text(v) => format!("{v:?}"),
        Value::Bytes(v) => format!("x'{}'", v.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        Value::Timestamp(v) => v.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        Value::Uuid(v) => v.to_string(),
        Value::Json(v) => v.to_string(),
    }
}

/// A value as JSON, for records of what changed (bytes in hex, times in RFC 3339).
pub(crate) fn json_of(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null => J::Null,
        Value::Bool(v) => J::Bool(*v),
        Value::I32(v) => J::from(*v),
        Value::I64(v) => J::from(*v),
        Value::F64(v) => J::from(*v),
        Value::Json(v) => v.clone(),
        Value::Text(_) | Value::Bytes(_) | Value::Timestamp(_) | Value::Uuid(_) => J::String(id_text(value)),
    }
}

/// A record id as shown in errors and reports.
pub(crate) fn id_text(value: &Value) -> String {
    match value {
        Value::Text(v) => v.clone(),
        Value::I32(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::Uuid(v) => v.to_string(),
        other => show(other),
    }
}

/// Whether two stored values are the same (NaN equals NaN: it round-trips).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F64(a), Value::F64(b)) => a == b || (a.is_nan() && b.is_nan()),
        _ => a == b,
    }
}

/// One record in an audit page: its row (as read, header first) and its
/// events (decoded, in version order; or why they could not be).
pub(crate) fn audit_record<M: Machine>(
    report: &mut AuditReport,
    record: String,
    row: Option<&[Value]>,
    events: Result<Vec<Envelope<M>>, Problem>,
    count: usize,
) {
    report.records += 1;
    report.events += count as u64;
    let mut problems = Vec::new();
    match (row, events) {
        (None, _) => problems.push(Problem::MissingRow { events: count as u64 }),
        (Some(_), Ok(events)) if events.is_empty() => problems.push(Problem::MissingEvents),
        (Some(row), Ok(events)) => match fold::<M>(&events) {
            Ok(Some(folded)) => compare::<M>(row, &folded, &mut problems),
            Ok(None) => problems.push(Problem::MissingEvents),
            Err(problem) => problems.push(problem),
        },
        (Some(_), Err(problem)) => problems.push(problem),
    }
    report.mismatches.extend(problems.into_iter().map(|problem| Mismatch { record: record.clone(), problem }));
}

fn compare<M: Machine>(row: &[Value], folded: &[Value], problems: &mut Vec<Problem>) {
    let state = |value: &Value| match value {
        Value::Text(name) => M::DEF.state_by_db_name(name).map(|s| s.db_name),
        _ => None,
    };
    if state(&row[1]).is_none() || state(&row[1]) != state(&folded[1]) {
        problems.push(Problem::Status { row: show_name(&row[1]), folded: show_name(&folded[1]) });
    }
    if row[2] != folded[2] {
        let version = |v: &Value| if let Value::I64(v) = v { *v } else { 0 };
        problems.push(Problem::Version { row: version(&row[2]), folded: version(&folded[2]) });
    }
    let names = ["created_at", "updated_at"].into_iter().chain(M::DEF.columns.iter().map(|c| c.name));
    for ((name, row), folded) in names.zip(&row[3..]).zip(&folded[3..]) {
        if !same(row, folded) {
            problems.push(Problem::Column { column: name, row: row.clone(), folded: folded.clone() });
        }
    }
}

fn show_name(value: &Value) -> String {
    match value {
        Value::Text(name) => name.clone(),
        other => show(other),
    }
}

/// A timestamp at stored precision.
pub(crate) fn stored_time(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}
