//! Event sourcing on the stored data: a record rebuilt from its events (the
//! fold), and the audit comparing every row with the fold of its events.

use crate::machine::{Machine, Row, RowHeader, Status};
use crate::schema::MachineDef;
use crate::store::StoredEvent;
use crate::value::Value;
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

/// The row a record had after `events` (in version order), or `None` without events.
///
/// # Errors
/// serde's or the row's message when the events do not make a row.
pub(crate) fn fold<M: Machine>(events: &[StoredEvent<M>]) -> Result<Option<M::Row>, String> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(None) };
    let mut fold = Fold::new(M::DEF);
    for stored in events {
        fold.apply(&stored.event).map_err(|e| e.to_string())?;
    }
    let header = RowHeader {
        id: first.record_id.clone(),
        status: last.to,
        version: last.version,
        created_at: first.created_at,
        updated_at: last.created_at,
    };
    M::Row::from_parts(header, fold.into_columns()).map(Some).map_err(|e| e.to_string())
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
        position: i64,
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
fn show(value: &Value) -> String {
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
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F64(a), Value::F64(b)) => a == b || (a.is_nan() && b.is_nan()),
        _ => a == b,
    }
}

/// One record in an audit page: its row (as read, header first) and its
/// events (as read, in version order).
pub(crate) fn audit_record<M: Machine>(
    report: &mut AuditReport,
    record: String,
    row: Option<&[Value]>,
    events: &[Vec<Value>],
) {
    report.records += 1;
    report.events += events.len() as u64;
    let mut problems = Vec::new();
    match (row, events.is_empty()) {
        (None, _) => problems.push(Problem::MissingRow { events: events.len() as u64 }),
        (Some(_), true) => problems.push(Problem::MissingEvents),
        (Some(row), false) => match fold_values::<M>(events) {
            Ok(folded) => compare::<M>(row, &folded, &mut problems),
            Err(problem) => problems.push(problem),
        },
    }
    report.mismatches.extend(problems.into_iter().map(|problem| Mismatch { record: record.clone(), problem }));
}

/// Folds raw events (in [`EVENT_COLUMNS`](crate::backend::render::EVENT_COLUMNS)
/// order) into a row's values (header first), checking that they form a history.
fn fold_values<M: Machine>(events: &[Vec<Value>]) -> Result<Vec<Value>, Problem> {
    let mut fold = Fold::new(M::DEF);
    let mut previous: Option<M::Status> = None;
    let mut times = (None, None);
    for (i, event) in events.iter().enumerate() {
        let [Value::I64(position), _, kind, from, _, Value::I64(version), payload, _, Value::Timestamp(at)] =
            event.as_slice()
        else {
            return Err(Problem::History { position: 0, reason: "the event row has unexpected column types".into() });
        };
        let broken = |reason: String| Problem::History { position: *position, reason };
        let expected = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if *version != expected {
            return Err(broken(format!("version {version} where {expected} was expected")));
        }
        let status = match kind {
            Value::Text(kind) => {
                M::Status::from_db_name(kind).ok_or_else(|| broken(format!("`{kind}` is not a state")))?
            }
            _ => return Err(broken("no kind".into())),
        };
        let from = match from {
            Value::Text(from) => {
                Some(M::Status::from_db_name(from).ok_or_else(|| broken(format!("`{from}` is not a state")))?)
            }
            _ => None,
        };
        if from != previous {
            let name = |s: Option<M::Status>| s.map_or("nothing", |s| s.name());
            return Err(broken(format!("it leaves {} but the record was in {}", name(from), name(previous))));
        }
        let payload = match payload {
            Value::Text(json) => json.as_str(),
            _ => "null",
        };
        let decoded = M::decode(status, payload).map_err(|e| broken(format!("payload does not decode: {e}")))?;
        fold.apply(&decoded).map_err(|e| broken(format!("payload does not encode: {e}")))?;
        previous = Some(status);
        times = (times.0.or(Some(*at)), Some(*at));
    }
    let (Some(status), (Some(created_at), Some(updated_at))) = (previous, times) else {
        return Err(Problem::MissingEvents);
    };
    let mut values = vec![
        events[0][1].clone(),
        Value::Text(status.db_name().to_owned()),
        Value::I64(i64::try_from(events.len()).unwrap_or(i64::MAX)),
        Value::Timestamp(created_at),
        Value::Timestamp(updated_at),
    ];
    values.extend(fold.into_columns());
    Ok(values)
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
