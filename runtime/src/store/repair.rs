//! Repair: rows rewritten from the fold of their events ("how does a
//! stateful steward repair itself? By rebuilding the state from events").

use super::Store;
use crate::backend::Backend;
use crate::error::Error;
use crate::fold::{self, Problem};
use crate::machine::Machine;
use crate::schema::LogicalType;
use crate::value::{Column, Value};
use std::fmt;

/// How [`Store::repair`] runs.
///
/// ```
/// let dry = statefold::RepairOptions::default();
/// assert!(!dry.apply);
/// let apply = statefold::RepairOptions::apply("ops@example.com");
/// assert!(apply.apply);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairOptions {
    /// Rewrites the rows; otherwise only says what it would change (the default).
    pub apply: bool,
    /// Who repairs, recorded with every repair.
    pub actor: String,
}

impl Default for RepairOptions {
    /// A dry run.
    fn default() -> Self {
        Self { apply: false, actor: "statefold".to_owned() }
    }
}

impl RepairOptions {
    /// Rewrites the rows, recording `actor` as who did.
    pub fn apply(actor: impl Into<String>) -> Self {
        Self { apply: true, actor: actor.into() }
    }
}

/// What [`Store::repair`] found and did.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RepairReport {
    /// Whether the rows were rewritten (otherwise a dry run).
    pub applied: bool,
    /// Every row that differs from the fold of its events, and how.
    pub repairs: Vec<Repair>,
    /// Records that cannot be repaired from their events, and why; and
    /// records that changed while the repair ran (left for the next run).
    pub skipped: Vec<(String, String)>,
}

impl RepairReport {
    /// Whether nothing needed repairing, and nothing was skipped.
    pub fn is_clean(&self) -> bool {
        self.repairs.is_empty() && self.skipped.is_empty()
    }
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.applied { "repaired" } else { "would repair" };
        write!(f, "repair: {verb} {} record(s), {} skipped", self.repairs.len(), self.skipped.len())?;
        for repair in &self.repairs {
            write!(f, "\n  {repair}")?;
        }
        for (record, why) in &self.skipped {
            write!(f, "\n  record `{record}` skipped: {why}")?;
        }
        Ok(())
    }
}

/// One row rewritten (or to be) from its events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Repair {
    /// The record's id, as text.
    pub record: String,
    /// Each column that changes: its name, the row's value, the events' value.
    pub changes: Vec<(&'static str, Value, Value)>,
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record `{}`:", self.record)?;
        for (column, before, after) in &self.changes {
            write!(f, " {column} {} -> {};", fold::show(before), fold::show(after))?;
        }
        Ok(())
    }
}

impl<M: Machine, B: Backend> Store<M, B> {
    /// Rewrites every row that differs from the fold of its events: the
    /// audit's findings, repaired. A dry run by default (it only reports
    /// what it would change); with [`RepairOptions::apply`], each record is
    /// repaired in a transaction of its own: its row locked and read again,
    /// its events folded again, the row rewritten only if it is still at
    /// the version and status just read (a record that changes meanwhile is
    /// left for the next run, never overwritten), and the repair recorded
    /// in `statefold_repairs` (who, when, the row before and after).
    ///
    /// Rows whose events do not form a history, and events without a row,
    /// cannot be rebuilt from the log: they are reported as skipped.
    ///
    /// # Errors
    /// [`Error::Database`] when the database fails; [`Error::MissingTable`]
    /// without `statefold_repairs` when applying.
    ///
    /// ```
    /// # use statefold::{Machine, Sqlite, Store, RepairOptions};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// # let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// # store.create_tables().await?;
    /// # store.create_support_tables().await?;
    /// store.insert(DoorClosed { who: "ada".into() }).await?;
    /// sqlx::query("UPDATE doors SET who = 'mallory'").execute(store.pool()).await?;
    /// let dry = store.repair(RepairOptions::default()).await?;
    /// assert_eq!(dry.repairs.len(), 1);
    /// assert!(!store.audit().await?.is_clean(), "a dry run changes nothing");
    /// store.repair(RepairOptions::apply("ops")).await?;
    /// assert!(store.audit().await?.is_clean());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn repair(&self, options: RepairOptions) -> Result<RepairReport, Error> {
        self.repair_with(options, |_, _| {}).await
    }

    /// [`repair`](Self::repair), calling `progress(done, total)` after each
    /// record examined (for a progress bar).
    ///
    /// # Errors
    /// As [`repair`](Self::repair).
    pub async fn repair_with(
        &self,
        options: RepairOptions,
        mut progress: impl FnMut(usize, usize) + Send,
    ) -> Result<RepairReport, Error> {
        let audit = self.audit().await?;
        let mut report = RepairReport { applied: options.apply, ..RepairReport::default() };
        let mut records: Vec<&str> = Vec::new();
        for mismatch in &audit.mismatches {
            match &mismatch.problem {
                Problem::MissingRow { .. } => report
                    .skipped
                    .push((mismatch.record.clone(), "events but no row: restore the row, then repair".to_owned())),
                Problem::MissingEvents => report
                    .skipped
                    .push((mismatch.record.clone(), "a row but no event: nothing to rebuild it from".to_owned())),
                Problem::History { .. } => {
                    report
                        .skipped
                        .push((mismatch.record.clone(), format!("its events do not fold: {}", mismatch.problem)));
                }
                _ if records.last() == Some(&mismatch.record.as_str()) => {}
                _ => records.push(&mismatch.record),
            }
        }
        let total = records.len();
        for (done, record) in records.into_iter().enumerate() {
            match self.repair_record(record, &options).await? {
                Ok(repair) => report.repairs.extend(repair),
                Err(why) => report.skipped.push((record.to_owned(), why)),
            }
            progress(done + 1, total);
        }
        Ok(report)
    }

    /// Repairs one record in a transaction of its own; `Err(why)` when it
    /// is left as it is.
    async fn repair_record(
        &self,
        record: &str,
        options: &RepairOptions,
    ) -> Result<Result<Option<Repair>, String>, Error> {
        let id = match M::Id::from_value(Value::Text(record.to_owned())).or_else(|_| parse_id::<M>(record)) {
            Ok(id) => id,
            Err(error) => return Ok(Err(format!("its id does not read back: {error}"))),
        };
        let key = id.to_value();
        let q = &self.inner.sql.queries;
        let mut tx = self.begin().await?;
        let rows = B::fetch_all(&mut tx, &q.lock, &[(&key, M::DEF.id.ty)], &q.row_types)
            .await
            .map_err(|e| self.failure(e, Some(&key)))?;
        let Some(row) = rows.into_iter().next() else { return Ok(Err("the row is gone".to_owned())) };
        let events = B::fetch_all(&mut tx, &q.history, &[(&key, M::DEF.id.ty)], &q.event_types)
            .await
            .map_err(|e| self.failure(e, Some(&key)))?;
        let events = match events.into_iter().map(|values| self.event(values)).collect::<Result<Vec<_>, _>>() {
            Ok(events) => events,
            Err(error) => return Ok(Err(format!("an event does not decode: {error}"))),
        };
        let folded = match fold::fold::<M>(&events) {
            Ok(Some(folded)) => folded,
            Ok(None) => return Ok(Err("a row but no event".to_owned())),
            Err(problem) => return Ok(Err(format!("its events do not fold: {problem}"))),
        };
        let names = ["id", "status", "version", "created_at", "updated_at"]
            .into_iter()
            .chain(M::DEF.columns.iter().map(|c| c.name));
        let changes: Vec<(&'static str, Value, Value)> = names
            .zip(row.iter().zip(&folded))
            .filter(|(_, (row, folded))| !fold::same(row, folded))
            .map(|(name, (row, folded))| (name, row.clone(), folded.clone()))
            .collect();
        if changes.is_empty() {
            // Fixed meanwhile (or the audit raced a write): nothing to do.
            return Ok(Ok(None));
        }
        let repair = Repair { record: record.to_owned(), changes };
        if !options.apply {
            return Ok(Ok(Some(repair)));
        }
        let mut binds: Vec<(&Value, LogicalType)> = Vec::new();
        let types = crate::backend::render::row_types(M::DEF);
        binds.extend(folded[1..].iter().zip(&types[1..]).map(|(v, ty)| (v, *ty)));
        binds.push((&key, M::DEF.id.ty));
        binds.push((&row[2], LogicalType::I64));
        binds.push((&row[1], LogicalType::Text));
        let changed = B::execute_with(&mut tx, &q.repair, &binds).await.map_err(|e| self.failure(e, Some(&key)))?;
        if changed != 1 {
            return Ok(Err("it changed while the repair ran; run the repair again".to_owned()));
        }
        let snapshot = |values: &[Value]| {
            let names = ["id", "status", "version", "created_at", "updated_at"]
                .into_iter()
                .chain(M::DEF.columns.iter().map(|c| c.name));
            Value::Json(serde_json::Value::Object(
                names.zip(values).map(|(name, value)| (name.to_owned(), fold::json_of(value))).collect(),
            ))
        };
        let record_values = [
            (Value::Text(M::DEF.table.to_owned()), LogicalType::Text),
            (Value::Text(record.to_owned()), LogicalType::Text),
            (Value::Text(options.actor.clone()), LogicalType::Text),
            (snapshot(&row), LogicalType::Json),
            (snapshot(&folded), LogicalType::Json),
            (Value::Timestamp(fold::stored_time(chrono::Utc::now())), LogicalType::Timestamp),
        ];
        let binds: Vec<(&Value, LogicalType)> = record_values.iter().map(|(v, ty)| (v, *ty)).collect();
        B::execute_with(&mut tx, &q.record_repair, &binds).await.map_err(|e| self.failure(e, None))?;
        tx.commit().await?;
        Ok(Ok(Some(repair)))
    }
}

/// A record id from its text, for keys that are not text.
fn parse_id<M: Machine>(record: &str) -> Result<M::Id, String> {
    let value = match M::DEF.id.ty {
        LogicalType::I64 => record.parse().map(Value::I64).map_err(|e| e.to_string())?,
        LogicalType::I32 => record.parse().map(Value::I32).map_err(|e| e.to_string())?,
        LogicalType::Uuid => record.parse().map(Value::Uuid).map_err(|e: uuid::Error| e.to_string())?,
        _ => Value::Text(record.to_owned()),
    };
    M::Id::from_value(value).map_err(|e| e.to_string())
}
