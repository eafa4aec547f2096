//! The audit: every record's row compared with the fold of its events.

use super::Store;
use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::fold::{self, AuditReport, Problem};
use crate::machine::Machine;
use crate::schema::LogicalType;
use crate::value::Value;

/// How many rows the audit reads at a time.
const AUDIT_PAGE: usize = 500;

impl<M: Machine, B: Backend> Store<M, B> {
    /// Folds every record's events and compares the result with its row,
    /// reporting each difference ("data can lie": this is how you find out).
    /// Reads one consistent snapshot, a page of records at a time.
    ///
    /// # Errors
    /// [`Error::Database`] when the database fails; differences are not
    /// errors but entries of the report.
    ///
    /// ```
    /// # use statefold::{Machine, Sqlite, Store};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// # let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// # store.create_tables().await?;
    /// store.insert(DoorClosed { who: "ada".into() }).await?;
    /// // Someone edits the row by hand...
    /// sqlx::query("UPDATE doors SET who = ?").bind("mallory").execute(store.pool()).await?;
    /// let report = store.audit().await?;
    /// assert_eq!(report.mismatches.len(), 1);
    /// assert!(report.to_string().contains(r#"column `who` is "mallory" in the row but "ada" by its events"#));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn audit(&self) -> Result<AuditReport, Error> {
        let q = &self.inner.sql.queries;
        let fail = |e| self.failure(e, None);
        let mut tx = self.inner.pool.begin_with(B::BEGIN_SNAPSHOT).await.map_err(fail)?;
        let mut report = AuditReport::default();
        let mut lower: Option<Value> = None;
        let limit = Value::I64(AUDIT_PAGE as i64);
        loop {
            let rows = match &lower {
                None => B::fetch_all(&mut tx, &q.audit_rows_first, &[(&limit, LogicalType::I64)], &q.row_types).await,
                Some(after) => {
                    let binds = [(after, M::DEF.id.ty), (&limit, LogicalType::I64)];
                    B::fetch_all(&mut tx, &q.audit_rows_after, &binds, &q.row_types).await
                }
            }
            .map_err(fail)?;
            // The last page's events reach past its last row, to catch events
            // of records whose row is missing.
            let upper = (rows.len() == AUDIT_PAGE).then(|| rows[rows.len() - 1][0].clone());
            let mut binds = Vec::new();
            binds.extend(lower.as_ref().map(|v| (v, M::DEF.id.ty)));
            binds.extend(upper.as_ref().map(|v| (v, M::DEF.id.ty)));
            let sql = &q.audit_events[usize::from(lower.is_some()) * 2 + usize::from(upper.is_some())];
            let events = B::fetch_all(&mut tx, sql, &binds, &q.event_types).await.map_err(fail)?;
            self.audit_page(&mut report, &rows, events);
            match upper {
                Some(upper) => lower = Some(upper),
                None => break,
            }
        }
        tx.rollback().await.map_err(fail)?;
        Ok(report)
    }
}

impl<M: Machine, B: Backend> Store<M, B> {
    /// Audits one page: rows (by id) and the events of every record in their id range.
    fn audit_page(&self, report: &mut AuditReport, rows: &[Vec<Value>], events: Vec<Vec<Value>>) {
        let mut seen = vec![false; rows.len()];
        // Events come grouped by record, in the same order as rows; a linear
        // search per group suffices for one page.
        let mut events = events.into_iter().peekable();
        while let Some(first) = events.next() {
            let record_id = first[1].clone();
            let mut group = vec![first];
            while events.peek().is_some_and(|next| next[1] == record_id) {
                group.extend(events.next());
            }
            let row = rows.iter().position(|row| row[0] == record_id);
            if let Some(i) = row {
                seen[i] = true;
            }
            let count = group.len();
            let decoded = group.into_iter().map(|values| self.event(values).map_err(history)).collect();
            fold::audit_record::<M>(report, fold::id_text(&record_id), row.map(|i| rows[i].as_slice()), decoded, count);
        }
        for (row, _) in rows.iter().zip(seen).filter(|(_, seen)| !seen) {
            fold::audit_record::<M>(report, fold::id_text(&row[0]), Some(row), Ok(Vec::<Envelope<M>>::new()), 0);
        }
    }
}

/// An event that does not decode, as the audit reports it.
fn history(error: Error) -> Problem {
    match error {
        Error::Decode { position, message, .. } => {
            Problem::History { position, reason: format!("payload does not decode: {message}") }
        }
        Error::NewerEvent { position, state, version, current, .. } => Problem::History {
            position,
            reason: format!("version {version} of `{state}`, newer than this code reads ({current})"),
        },
        other => Problem::History { position: crate::stream::Position::START, reason: other.to_string() },
    }
}
