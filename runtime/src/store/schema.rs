//! The schema check: the live tables against the declaration.

use super::Store;
use crate::backend::log::Log;
use crate::backend::render;
use crate::backend::Backend;
use crate::error::Error;
use crate::machine::Machine;
use crate::schema::{LogicalType, RESERVED_COLUMNS};
use crate::value::Value;

impl<M: Machine, B: Backend> Store<M, B> {
    /// Compares the live tables with the machine's declaration: every table,
    /// column and index the store needs must exist. Call it at start-up, so
    /// that code deployed before its migrations says so at once rather than
    /// on its first write. (A statement that fails for the same reason
    /// returns the same error.)
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] naming each missing table, column and index,
    /// and what to run; [`Error::Database`] when the database fails.
    ///
    /// ```
    /// # use statefold::{Error, Machine, Sqlite, Store};
    /// #[derive(Debug, Clone, Machine)]
    /// #[machine(table = "loans")]
    /// enum Loan {
    ///     #[initial]
    ///     Requested { amount: i64, days: i32 },
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// let store = Store::<Loan, Sqlite>::connect("sqlite::memory:").await?;
    /// // An earlier release's table, without `days`.
    /// sqlx::query("CREATE TABLE loans (id INTEGER PRIMARY KEY, status TEXT, version INTEGER, created_at TEXT, updated_at TEXT, amount INTEGER)")
    ///     .execute(store.pool())
    ///     .await?;
    /// let error = store.check_schema().await.unwrap_err();
    /// assert!(error.to_string().contains("table `loans` has no column `days`"));
    /// assert!(error.to_string().contains("table `loan_events` does not exist"));
    /// assert!(error.to_string().contains("migrations apply"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn check_schema(&self) -> Result<(), Error> {
        let def = M::DEF;
        let mut problems = Vec::new();
        let records: Vec<&str> = RESERVED_COLUMNS.into_iter().chain(def.columns.iter().map(|c| c.name)).collect();
        let events: Vec<String> = <B::Log as Log<B>>::columns().split(", ").map(unquote).collect();
        let events: Vec<&str> = events.iter().map(String::as_str).collect();
        for (table, columns) in [(def.table, records), (def.events_table, events)] {
            let found = self.names(B::COLUMNS_SQL, table).await?;
            if found.is_empty() {
                problems.push(format!("table `{table}` does not exist"));
                continue;
            }
            for column in columns {
                if !found.iter().any(|f| f == &column.to_lowercase()) {
                    problems.push(format!("table `{table}` has no column `{column}`"));
                }
            }
        }
        if problems.is_empty() {
            let indexes = self.names(B::INDEXES_SQL, def.table).await?;
            let wanted = std::iter::once(render::status_index_name(def))
                .chain(def.columns.iter().filter(|c| c.indexed).map(|c| render::column_index_name(def, c.name)));
            for index in wanted {
                if !indexes.contains(&index) {
                    problems.push(format!("table `{}` has no index `{index}`", def.table));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::SchemaMismatch { machine: def.name, problems })
        }
    }

    /// The names a catalog query lists for `table`.
    async fn names(&self, sql: &str, table: &str) -> Result<Vec<String>, Error> {
        let mut conn = self.pool().acquire().await?;
        let table = Value::Text(table.to_owned());
        let rows = B::fetch_all(&mut conn, sql, &[(&table, LogicalType::Text)], &[LogicalType::Text])
            .await
            .map_err(|e| self.failure(e, None))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match row.into_iter().next() {
                Some(Value::Text(name)) => Some(name),
                _ => None,
            })
            .collect())
    }
}

/// A column name without its quotes.
fn unquote(quoted: &str) -> String {
    quoted.trim_matches(|c| c == '"' || c == '`').to_owned()
}
