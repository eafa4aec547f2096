//! Inserts and transitions: each a guarded row write and its event, in one
//! transaction (one statement on PostgreSQL), and the diagnosis of a write
//! the guard refused.

use super::{NewRecord, Store, Tx};
use crate::backend::{Backend, Conn, Write, Written};
use crate::error::Error;
use crate::fate::FaultPoint;
use crate::fold;
use crate::machine::{Encoded, Event, Initial, Machine, Metadata, Record, Row, Status, Transition};
use crate::schema::LogicalType;
use crate::value::{Column, Value};
use chrono::Utc;

impl<M: Machine, B: Backend> Store<M, B> {
    /// Inserts a record created by `event` under the caller's key.
    ///
    /// # Errors
    /// [`Error::IdGenerated`] when the database assigns the machine's ids;
    /// [`Error::Duplicate`] when the key is taken.
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
    /// let error = store.insert_with_id(7, DoorClosed { who: "ada".into() }).await.unwrap_err();
    /// assert!(matches!(error, statefold::Error::IdGenerated { .. }));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn insert_with_id<E: Initial + Event<Machine = M>>(
        &self,
        id: M::Id,
        event: E,
    ) -> Result<Record<M, E>, Error> {
        self.create(NewRecord::new(event).with_id(id)).await
    }

    /// Inserts a record: row and first event in one transaction.
    ///
    /// # Errors
    /// As [`insert`](Self::insert) and [`insert_with_id`](Self::insert_with_id).
    pub async fn create<E: Initial + Event<Machine = M>>(&self, new: NewRecord<E>) -> Result<Record<M, E>, Error> {
        let write = self.new_write(&new)?;
        let written = self.write(&write).await?.ok_or(sqlx::Error::RowNotFound)?;
        self.inserted(&write, written).map(Record::__from_row)
    }

    /// Applies a typed transition (from [`Record::transition`]): the row moves
    /// to the event's state only if it still has the status and version the
    /// record was read at.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the record changed since it was read (nothing
    /// is written); [`Error::NotFound`] when it no longer exists.
    pub async fn apply<E: Event<Machine = M>>(&self, transition: Transition<M, E>) -> Result<Record<M, E>, Error> {
        let write = self.typed_write(&transition)?;
        match self.write(&write).await? {
            Some(written) => self.transitioned(written).map(Record::__from_row),
            None => Err(self.refusal(&transition.id, transition.from, transition.version).await),
        }
    }

    /// Inserts a record created by `event`, a value of the machine's enum
    /// known only at run time: its state must be `#[initial]`, which is
    /// checked here. Give `id` exactly when the machine's records are keyed by
    /// the caller.
    ///
    /// # Errors
    /// [`Error::NotInitial`] when the event's state is not initial (nothing is
    /// written); otherwise as [`create`](Self::create).
    ///
    /// ```
    /// # use statefold::{Error, Machine, Metadata, Sqlite, Store};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// # let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// # store.create_tables().await?;
    /// let error = store.insert_dynamic(None, Door::Open { who: "ada".into() }, Metadata::new()).await.unwrap_err();
    /// assert!(error.to_string().contains("cannot start in Open: insert them in an #[initial] state (Closed)"));
    /// let closed = store.insert_dynamic(None, Door::Closed { who: "ada".into() }, Metadata::new()).await?;
    /// assert_eq!(closed.status(), DoorStatus::Closed);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn insert_dynamic(&self, id: Option<M::Id>, event: M, metadata: Metadata) -> Result<M::State, Error> {
        self.insert_row(id, event, metadata).await.map(M::into_state)
    }

    /// [`insert_dynamic`](Self::insert_dynamic), returning the row.
    pub(crate) async fn insert_row(&self, id: Option<M::Id>, event: M, metadata: Metadata) -> Result<M::Row, Error> {
        let write = self.insert_write(id.as_ref(), event.status(), event.encode(), &metadata)?;
        let written = self.write(&write).await?.ok_or(sqlx::Error::RowNotFound)?;
        self.inserted(&write, written)
    }

    /// Moves a record to the state of `event`, a value of the machine's enum
    /// known only at run time (a command by id, from a request, say),
    /// whatever its version. The edge is checked by the write itself: the
    /// row changes only if it is in a state the event's state may be entered
    /// from. On PostgreSQL that is one statement, one round trip (the row,
    /// locked, guards the update and gives the event its `from`); on SQLite
    /// and MySQL one transaction that reads the row (locked) and writes.
    /// Only when nothing changed does a second query find out why.
    ///
    /// To move the record only if it is still at the version a client saw
    /// (an HTTP `If-Match`), use [`transition_if_match`](Self::transition_if_match).
    ///
    /// # Errors
    /// [`Error::InvalidTransition`] when the machine declares no edge from the
    /// record's state to the event's (nothing is written); [`Error::NotFound`].
    ///
    /// ```
    /// # use statefold::{Error, Machine, Metadata, Sqlite, Store};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// # let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// # store.create_tables().await?;
    /// let door = store.insert(DoorClosed { who: "ada".into() }).await?;
    /// // Say the target comes from a request: it is checked at run time.
    /// let open = store.transition(door.id(), Door::Open { who: "bob".into() }, Metadata::new().actor("bob")).await?;
    /// assert_eq!(open.status(), DoorStatus::Open);
    /// let error = store.transition(door.id(), Door::Open { who: "eve".into() }, Metadata::new()).await.unwrap_err();
    /// assert!(matches!(error, Error::InvalidTransition { from: "Open", to: "Open", .. }));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn transition(&self, id: &M::Id, event: M, metadata: Metadata) -> Result<M::State, Error> {
        self.transition_row(id, event, metadata).await.map(M::into_state)
    }

    /// [`transition`](Self::transition), returning the row.
    pub(crate) async fn transition_row(&self, id: &M::Id, event: M, metadata: Metadata) -> Result<M::Row, Error> {
        let to = event.status();
        let write = self.by_id_write(id, to, event.encode(), &metadata)?;
        match self.write(&write).await? {
            Some(written) => self.transitioned(written),
            None => Err(self.refusal_by_id(&mut *self.inner.pool.acquire().await?, id, to).await),
        }
    }

    /// Moves a record to the state of `event` only if it is still in
    /// `status` at `version`, as a client saw it (an HTTP API's `ETag` and
    /// `If-Match`): one guarded write, with no read before it.
    ///
    /// # Errors
    /// [`Error::InvalidTransition`] when the machine declares no edge from
    /// `status` to the event's state (checked before anything is sent);
    /// [`Error::Conflict`] when the record is no longer there at that state
    /// and version, with the state and version found; [`Error::NotFound`].
    ///
    /// ```
    /// # use statefold::{Error, Machine, Metadata, Sqlite, Store};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// # let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// # store.create_tables().await?;
    /// let door = store.insert(DoorClosed { who: "ada".into() }).await?;
    /// // The client saw version 1, closed (its ETag), and asks to open.
    /// let (seen, version) = (DoorStatus::Closed, 1);
    /// let open = Door::Open { who: "bob".into() };
    /// store.transition_if_match(door.id(), seen, version, open.clone(), Metadata::new()).await?;
    /// // The same request again: the record has moved on.
    /// let error = store.transition_if_match(door.id(), seen, version, open, Metadata::new()).await.unwrap_err();
    /// assert!(matches!(error, Error::Conflict { actual_version: 2, .. }));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn transition_if_match(
        &self,
        id: &M::Id,
        status: M::Status,
        version: i64,
        event: M,
        metadata: Metadata,
    ) -> Result<M::State, Error> {
        self.transition_if_match_row(id, status, version, event, metadata).await.map(M::into_state)
    }

    /// [`transition_if_match`](Self::transition_if_match), returning the row.
    pub(crate) async fn transition_if_match_row(
        &self,
        id: &M::Id,
        status: M::Status,
        version: i64,
        event: M,
        metadata: Metadata,
    ) -> Result<M::Row, Error> {
        let write = self.transition_write(id, status, version, event.status(), event.encode(), &metadata)?;
        match self.write(&write).await? {
            Some(written) => self.transitioned(written),
            None => Err(self.refusal(id, status, version).await),
        }
    }

    /// [`create`](Self::create) inside the caller's transaction.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub async fn create_in<E: Initial + Event<Machine = M>>(
        &self,
        tx: &mut Tx<'_, B>,
        new: NewRecord<E>,
    ) -> Result<Record<M, E>, Error> {
        let write = self.new_write(&new)?;
        let written = self.write_in(tx, &write).await?.ok_or(sqlx::Error::RowNotFound)?;
        self.inserted(&write, written).map(Record::__from_row)
    }

    /// [`apply`](Self::apply) inside the caller's transaction.
    ///
    /// # Errors
    /// As [`apply`](Self::apply).
    pub async fn apply_in<E: Event<Machine = M>>(
        &self,
        tx: &mut Tx<'_, B>,
        transition: Transition<M, E>,
    ) -> Result<Record<M, E>, Error> {
        let write = self.typed_write(&transition)?;
        match self.write_in(tx, &write).await? {
            Some(written) => self.transitioned(written).map(Record::__from_row),
            None => Err(self.refusal_on(&mut **tx, &transition.id, transition.from, transition.version).await),
        }
    }

    /// [`transition`](Self::transition) inside the caller's transaction.
    ///
    /// # Errors
    /// As [`transition`](Self::transition).
    pub async fn transition_in(
        &self,
        tx: &mut Tx<'_, B>,
        id: &M::Id,
        event: M,
        metadata: Metadata,
    ) -> Result<M::State, Error> {
        let to = event.status();
        let write = self.by_id_write(id, to, event.encode(), &metadata)?;
        match self.write_in(tx, &write).await? {
            Some(written) => self.transitioned(written).map(M::into_state),
            None => Err(self.refusal_by_id(&mut **tx, id, to).await),
        }
    }

    /// A transition at a known status and version, with its event as the
    /// machine's enum, inside the caller's transaction and without a
    /// savepoint of its own: how effects apply their typed transitions once
    /// the event's type is erased. The caller rolls back on error.
    pub(crate) async fn transition_at_in(
        &self,
        tx: &mut Tx<'_, B>,
        id: &M::Id,
        from: M::Status,
        version: i64,
        event: &M,
        metadata: &Metadata,
    ) -> Result<M::Row, Error> {
        let write = self.transition_write(id, from, version, event.status(), event.encode(), metadata)?;
        match B::write(&mut **tx, &self.inner.sql.plan, &write).await {
            Ok(Some(written)) => {
                tx.wrote(&self.inner.notifier);
                self.transitioned(written)
            }
            Ok(None) => Err(self.refusal_on(&mut **tx, id, from, version).await),
            Err(e) => Err(self.failure(e, write.id.as_ref())),
        }
    }

    /// The write inserting `new`.
    fn new_write<E: Initial + Event<Machine = M>>(&self, new: &NewRecord<E>) -> Result<Write, Error> {
        self.insert_write(new.id.as_ref(), E::STATUS, new.event.encode(), &new.metadata)
    }

    /// The write inserting a record in `status`, after checking that it is
    /// initial and that the key is given exactly when the caller supplies keys.
    fn insert_write(
        &self,
        id: Option<&M::Id>,
        status: M::Status,
        encoded: Result<Encoded, serde_json::Error>,
        metadata: &Metadata,
    ) -> Result<Write, Error> {
        let def = M::DEF;
        if !status.def().initial {
            let initial = def.initial_states().map(|s| s.name).collect();
            return Err(Error::NotInitial { machine: def.name, state: status.name(), initial });
        }
        match (id, def.id.generated) {
            (None, false) => return Err(Error::IdRequired { machine: def.name }),
            (Some(_), true) => return Err(Error::IdGenerated { machine: def.name }),
            _ => {}
        }
        let encoded = encoded.map_err(|source| Error::Encode { machine: def.name, source })?;
        self.build_write(status, id.map(Column::to_value), None, 0, encoded, metadata)
    }

    /// The write of a typed transition (its edge was checked at compile time,
    /// and is checked again with the others).
    fn typed_write<E: Event<Machine = M>>(&self, transition: &Transition<M, E>) -> Result<Write, Error> {
        let encoded = transition.event.encode();
        self.transition_write(
            &transition.id,
            transition.from,
            transition.version,
            E::STATUS,
            encoded,
            &transition.metadata,
        )
    }

    /// The write moving record `id` from `from` at `version` into `to`,
    /// after checking that the machine declares that edge.
    fn transition_write(
        &self,
        id: &M::Id,
        from: M::Status,
        version: i64,
        to: M::Status,
        encoded: Result<Encoded, serde_json::Error>,
        metadata: &Metadata,
    ) -> Result<Write, Error> {
        let def = M::DEF;
        if !def.can_transition(from.name(), to.name()) {
            return Err(Error::InvalidTransition {
                machine: def.name,
                id: id.to_string(),
                from: from.name(),
                to: to.name(),
                valid: def.sources_of(to.name()).collect(),
            });
        }
        let encoded = encoded.map_err(|source| Error::Encode { machine: def.name, source })?;
        self.build_write(to, Some(id.to_value()), Some(from), version, encoded, metadata)
    }

    /// The write moving record `id` into `to` from any state `to` may be
    /// entered from, at any version: the write finds which.
    fn by_id_write(
        &self,
        id: &M::Id,
        to: M::Status,
        encoded: Result<Encoded, serde_json::Error>,
        metadata: &Metadata,
    ) -> Result<Write, Error> {
        let encoded = encoded.map_err(|source| Error::Encode { machine: M::DEF.name, source })?;
        let mut write = self.build_write(to, Some(id.to_value()), None, 0, encoded, metadata)?;
        let state = &M::DEF.states[to.index()];
        let names = crate::backend::render::source_names(M::DEF, state);
        let text = |name: &str| Value::Text(name.to_owned());
        write.sources = Some(names.map(|(stored, current)| (text(stored), text(current))).collect());
        Ok(write)
    }

    fn build_write(
        &self,
        to: M::Status,
        id: Option<Value>,
        from: Option<M::Status>,
        version: i64,
        encoded: Encoded,
        metadata: &Metadata,
    ) -> Result<Write, Error> {
        let def = M::DEF;
        let positions = &self.inner.sql.queries.state_columns[to.index()];
        debug_assert!(
            encoded.columns.iter().map(|(name, _)| *name).eq(positions.iter().map(|&i| def.columns[i].name)),
            "the event's columns are its state's fields"
        );
        let columns =
            encoded.columns.into_iter().zip(positions).map(|((_, v), &i)| (fold::normalize(v), def.columns[i].ty));
        let metadata = serde_json::to_value(metadata).map_err(|source| Error::Encode { machine: def.name, source })?;
        Ok(Write {
            state: to.index(),
            id,
            id_type: def.id.ty,
            status: Value::Text(to.db_name().to_owned()),
            from: from.map(|s| Value::Text(s.db_name().to_owned())),
            from_names: from.map_or_else(Vec::new, |s| {
                let state = &def.states[s.index()];
                let names = std::iter::once(state.db_name).chain(state.was.iter().copied());
                names
                    .cycle()
                    .take(self.inner.sql.queries.guard_names)
                    .map(|name| Value::Text(name.to_owned()))
                    .collect()
            }),
            version: Value::I64(version),
            sources: None,
            at: Value::Timestamp(fold::stored_time(Utc::now())),
            columns: columns.collect(),
            payload: Value::Json(encoded.payload),
            metadata: Value::Json(metadata),
            schema_version: Value::I64(i64::from(to.def().version)),
            notify: self.inner.notify.clone(),
        })
    }

    /// Runs a write in its own transaction (none on backends where it is one
    /// statement and no fault is to be injected), with the fault points.
    async fn write(&self, write: &Write) -> Result<Option<Written>, Error> {
        let plan = &self.inner.sql.plan;
        if B::ONE_STATEMENT && self.inner.fate.is_none() {
            let mut conn = self.inner.pool.acquire().await?;
            let written = B::write(&mut conn, plan, write).await.map_err(|e| self.failure(e, write.id.as_ref()))?;
            drop(conn);
            if written.is_some() {
                self.inner.notifier.wake();
            }
            return Ok(written);
        }
        let mut tx = self.begin().await?;
        let written = match B::write(&mut tx, plan, write).await {
            Ok(Some(written)) => written,
            Ok(None) => {
                tx.rollback().await?;
                return Ok(None);
            }
            Err(e) => {
                // The write's error is the one to report; a failed rollback
                // means the connection is gone, and the database rolls back.
                let _ = tx.rollback().await;
                return Err(self.failure(e, write.id.as_ref()));
            }
        };
        if let Some(fault) = self.strike(FaultPoint::BeforeCommit) {
            tx.rollback().await?;
            return Err(fault);
        }
        tx.commit().await?;
        match self.strike(FaultPoint::AfterCommit) {
            Some(fault) => Err(fault),
            None => {
                self.inner.notifier.wake();
                Ok(Some(written))
            }
        }
    }

    /// Runs a write inside the caller's transaction, under a savepoint so
    /// that a failure leaves the transaction as it was.
    async fn write_in(&self, tx: &mut Tx<'_, B>, write: &Write) -> Result<Option<Written>, Error> {
        let mut savepoint = sqlx::Acquire::begin(tx.transaction()).await?;
        match B::write(&mut savepoint, &self.inner.sql.plan, write).await {
            Ok(Some(written)) => {
                savepoint.commit().await?;
                tx.wrote(&self.inner.notifier);
                Ok(Some(written))
            }
            Ok(None) => {
                savepoint.rollback().await?;
                Ok(None)
            }
            Err(e) => {
                let _ = savepoint.rollback().await;
                Err(self.failure(e, write.id.as_ref()))
            }
        }
    }

    /// Why a transition by id into `to` changed nothing: the record is
    /// gone, or in a state `to` cannot be entered from (or, in a race, it
    /// left such a state and came back: a conflict).
    async fn refusal_by_id(&self, conn: &mut Conn<B>, id: &M::Id, to: M::Status) -> Error {
        let row = match self.find_row(conn, id).await {
            Ok(Some(row)) => row,
            Ok(None) => return Error::NotFound { machine: M::DEF.name, id: id.to_string() },
            Err(error) => return error,
        };
        let def = M::DEF;
        let from = row.status();
        if def.can_transition(from.name(), to.name()) {
            Error::Conflict {
                machine: def.name,
                id: id.to_string(),
                expected_status: from.name(),
                expected_version: row.version(),
                actual_status: from.name().to_owned(),
                actual_version: row.version(),
            }
        } else {
            Error::InvalidTransition {
                machine: def.name,
                id: id.to_string(),
                from: from.name(),
                to: to.name(),
                valid: def.sources_of(to.name()).collect(),
            }
        }
    }

    /// Why a guarded write matched no row, found outside the failed write.
    async fn refusal(&self, id: &M::Id, from: M::Status, version: i64) -> Error {
        match self.inner.pool.acquire().await {
            Ok(mut conn) => self.refusal_on(&mut conn, id, from, version).await,
            Err(e) => e.into(),
        }
    }

    /// Why a guarded write matched no row: the record is gone, or it has
    /// another status or version than expected.
    async fn refusal_on(&self, conn: &mut Conn<B>, id: &M::Id, from: M::Status, version: i64) -> Error {
        let key = id.to_value();
        let (binds, types) = ([(&key, M::DEF.id.ty)], [LogicalType::Text, LogicalType::I64]);
        let row = match B::fetch_all(conn, &self.inner.sql.queries.head, &binds, &types).await {
            Ok(rows) => rows.into_iter().next(),
            Err(e) => return self.failure(e, Some(&key)),
        };
        let Some(row) = row else { return Error::NotFound { machine: M::DEF.name, id: id.to_string() } };
        let mut row = row.into_iter();
        let actual_status = match row.next() {
            Some(Value::Text(name)) => M::DEF.state_by_db_name(&name).map_or(name, |s| s.name.to_owned()),
            _ => String::new(),
        };
        let actual_version = match row.next() {
            Some(Value::I64(v)) => v,
            _ => 0,
        };
        Error::Conflict {
            machine: M::DEF.name,
            id: id.to_string(),
            expected_status: from.name(),
            expected_version: version,
            actual_status,
            actual_version,
        }
    }

    /// The row of a record just inserted: everything is known without reading it.
    fn inserted(&self, write: &Write, written: Written) -> Result<M::Row, Error> {
        let mut columns = vec![Value::Null; M::DEF.columns.len()];
        for ((value, _), &i) in write.columns.iter().zip(&self.inner.sql.queries.state_columns[write.state]) {
            columns[i] = value.clone();
        }
        let mut values = vec![written.id, write.status.clone(), Value::I64(1), write.at.clone(), write.at.clone()];
        values.extend(columns);
        self.row(values)
    }

    fn transitioned(&self, written: Written) -> Result<M::Row, Error> {
        self.row(written.row.ok_or(sqlx::Error::RowNotFound)?)
    }
}
