//! Reads: records by id or status, a record's history, and the record as
//! of a past time.

use super::{Page, Store, Tx};
use crate::backend::{Backend, Bind, Conn};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::fold;
use crate::machine::{Machine, Status};
use crate::schema::LogicalType;
use crate::value::{Column, Value};
use chrono::{DateTime, Utc};

impl<M: Machine, B: Backend> Store<M, B> {
    /// Loads a record as the typed handle of its current state.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::CorruptRow`] when the row does not fit the machine.
    pub async fn load(&self, id: &M::Id) -> Result<M::State, Error> {
        self.load_row(&mut *self.inner.pool.acquire().await?, id).await.map(M::into_state)
    }

    /// Loads a record if it exists.
    ///
    /// # Errors
    /// [`Error::CorruptRow`] when the row does not fit the machine.
    pub async fn find(&self, id: &M::Id) -> Result<Option<M::State>, Error> {
        Ok(self.find_row(&mut *self.inner.pool.acquire().await?, id).await?.map(M::into_state))
    }

    /// [`load`](Self::load) inside the caller's transaction (it sees the
    /// transaction's own writes).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn load_in(&self, tx: &mut Tx<'_, B>, id: &M::Id) -> Result<M::State, Error> {
        self.load_row(&mut **tx, id).await.map(M::into_state)
    }

    /// The rows in `status`, by increasing id, one page at a time.
    ///
    /// # Errors
    /// [`Error::CorruptRow`] when a row does not fit the machine.
    ///
    /// ```
    /// # use statefold::{Machine, Page, Sqlite, Store};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// # let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// # store.create_tables().await?;
    /// for who in ["ada", "bob", "cy"] {
    ///     store.insert(DoorClosed { who: who.into() }).await?;
    /// }
    /// let first = store.list(DoorStatus::Closed, Page::first(2)).await?;
    /// let rest = store.list(DoorStatus::Closed, Page::after(first[1].id, 2)).await?;
    /// assert_eq!((first.len(), rest[0].who.as_str()), (2, "cy"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list(&self, status: M::Status, page: Page<M::Id>) -> Result<Vec<M::Row>, Error> {
        let q = &self.inner.sql.queries;
        let state = status.def();
        let names: Vec<Value> = std::iter::once(state.db_name)
            .chain(state.was.iter().copied())
            .map(|n| Value::Text(n.to_owned()))
            .collect();
        let after = page.after.as_ref().map(Column::to_value);
        let limit = Value::I64(i64::from(page.limit));
        let mut binds: Vec<Bind<'_>> = names.iter().map(|n| (n, LogicalType::Text)).collect();
        if let Some(after) = &after {
            binds.push((after, M::DEF.id.ty));
        }
        binds.push((&limit, LogicalType::I64));
        let sql = if after.is_some() { &q.list_after[status.index()] } else { &q.list_first[status.index()] };
        let mut conn = self.inner.pool.acquire().await?;
        let rows = B::fetch_all(&mut conn, sql, &binds, &q.row_types).await.map_err(|e| self.failure(e, None))?;
        rows.into_iter().map(|values| self.row(values)).collect()
    }

    /// A record's events, oldest first (empty when the record does not exist).
    ///
    /// # Errors
    /// [`Error::Decode`] when a stored payload no longer matches its state's fields.
    ///
    /// ```
    /// # use statefold::{Machine, Metadata, Sqlite, Store};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// # let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// # store.create_tables().await?;
    /// let closed = store.insert(DoorClosed { who: "ada".into() }).await?;
    /// store.apply(closed.transition(DoorOpen { who: "bob".into() }).with_metadata(Metadata::new().actor("bob"))).await?;
    /// let history = store.history(&1).await?;
    /// assert!(matches!(&history[1].event, Door::Open { who } if who == "bob"));
    /// assert_eq!((history[1].from, history[1].to), (Some(DoorStatus::Closed), DoorStatus::Open));
    /// assert_eq!(history[1].metadata.actor.as_deref(), Some("bob"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn history(&self, id: &M::Id) -> Result<Vec<Envelope<M>>, Error> {
        let key = id.to_value();
        self.events(&self.inner.sql.queries.history, &[(&key, M::DEF.id.ty)]).await
    }

    /// The record as it was at `at`: the fold of its events written up to
    /// then (the longest run of versions from the first, all written by
    /// then), or `None` if it did not exist yet. Timestamps are compared at
    /// microsecond precision. The fold is the audit's: it checks that the
    /// versions follow each other and each event leaves the state the
    /// previous one entered.
    ///
    /// # Errors
    /// [`Error::Decode`] when a stored payload no longer matches its state's
    /// fields; [`Error::CorruptRow`] when the events do not make a row.
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
    /// let closed = store.insert(DoorClosed { who: "ada".into() }).await?;
    /// let opened_at = store.apply(closed.transition(DoorOpen { who: "bob".into() })).await?.row().updated_at;
    /// let before = store.as_of(&1, opened_at - chrono::Duration::microseconds(1)).await?.unwrap();
    /// assert_eq!((before.status, before.who.as_str()), (DoorStatus::Closed, "ada"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn as_of(&self, id: &M::Id, at: DateTime<Utc>) -> Result<Option<M::Row>, Error> {
        let (key, at) = (id.to_value(), Value::Timestamp(fold::stored_time(at)));
        let binds = [(&key, M::DEF.id.ty), (&at, LogicalType::Timestamp)];
        let events = self.events(&self.inner.sql.queries.history_until, &binds).await?;
        // Times come from the writers' clocks, which may disagree: a later
        // version may carry an earlier time. The record as of `at` is the
        // run of versions from the first that were all written by then.
        let run = events.iter().zip(1..).take_while(|(event, version)| event.version == *version).count();
        let folded = fold::fold::<M>(&events[..run]).map_err(|problem| Error::CorruptRow {
            machine: M::DEF.name,
            id: id.to_string(),
            message: format!("its events do not make a row: {problem}"),
        })?;
        folded.map(|values| self.row(values)).transpose()
    }

    pub(super) async fn find_row(&self, conn: &mut Conn<B>, id: &M::Id) -> Result<Option<M::Row>, Error> {
        let q = &self.inner.sql.queries;
        let key = id.to_value();
        let rows = B::fetch_all(conn, &q.load, &[(&key, M::DEF.id.ty)], &q.row_types)
            .await
            .map_err(|e| self.failure(e, Some(&key)))?;
        rows.into_iter().next().map(|values| self.row(values)).transpose()
    }

    pub(super) async fn load_row(&self, conn: &mut Conn<B>, id: &M::Id) -> Result<M::Row, Error> {
        self.find_row(conn, id).await?.ok_or_else(|| Error::NotFound { machine: M::DEF.name, id: id.to_string() })
    }

    /// The events a query returns.
    async fn events(&self, sql: &str, binds: &[Bind<'_>]) -> Result<Vec<Envelope<M>>, Error> {
        let mut conn = self.inner.pool.acquire().await?;
        let rows = B::fetch_all(&mut conn, sql, binds, &self.inner.sql.queries.event_types)
            .await
            .map_err(|e| self.failure(e, None))?;
        rows.into_iter().map(|values| self.event(values)).collect()
    }
}
