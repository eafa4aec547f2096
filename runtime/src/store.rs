//! The store: one machine's records (rows) and events, kept in step.

use crate::backend::render::Queries;
use crate::backend::{Backend, Bind, Conn, Failure, Write, Written};
use crate::error::Error;
use crate::fate::{Fate, FaultPoint};
use crate::fold::{self, AuditReport};
use crate::machine::{Encoded, Event, Initial, Machine, Metadata, Record, Row, RowHeader, Status, Transition};
use crate::schema::LogicalType;
use crate::value::{Column, Value};
use chrono::{DateTime, Utc};
use sqlx::Pool;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use tokio::sync::watch;

/// A transaction of a backend's database, as [`Store::begin`] opens it.
pub type Tx<'c, B> = sqlx::Transaction<'c, <B as Backend>::Db>;

/// How many rows the audit reads at a time.
const AUDIT_PAGE: usize = 500;

/// Persists the records of machine `M` in backend `B`: one mutable row per
/// record, and one immutable event per change, written in the same transaction.
///
/// Every write is guarded: a transition only applies to a row that still has
/// the status and version it was read at, so concurrent writers cannot lose
/// updates ([`Error::Conflict`]). Cheap to clone: clones share the pool and
/// the SQL rendered once for the machine.
///
/// ```
/// use statefold::{Machine, Sqlite, Store};
///
/// #[derive(Debug, Clone, Machine)]
/// #[machine(table = "doors")]
/// enum Door {
///     #[initial]
///     #[from(Open)]
///     Closed { who: String },
///     #[from(Closed)]
///     Open { who: String },
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefold::Error> {
/// let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
/// store.create_tables().await?;
///
/// let closed = store.insert(DoorClosed { who: "ada".into() }).await?;
/// let open = store.apply(closed.transition(DoorOpen { who: "bob".into() })).await?;
/// assert_eq!(open.version(), 2);
/// assert_eq!(store.history(open.id()).await?.len(), 2);
/// # Ok(())
/// # }
/// ```
pub struct Store<M: Machine, B: Backend> {
    pool: Pool<B::Db>,
    shared: Arc<Shared<B>>,
    fate: Option<Arc<Fate>>,
    notify: bool,
    machine: PhantomData<fn() -> M>,
}

struct Shared<B: Backend> {
    queries: Queries,
    plan: B::Plan,
    /// Counts commits, so that this process's streams wake up after each.
    commits: watch::Sender<u64>,
    /// The channel of cross-process wake-ups.
    channel: String,
}

impl<M: Machine, B: Backend> Clone for Store<M, B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            shared: self.shared.clone(),
            fate: self.fate.clone(),
            notify: self.notify,
            machine: PhantomData,
        }
    }
}

impl<M: Machine, B: Backend> fmt::Debug for Store<M, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("machine", &M::DEF.name)
            .field("backend", &B::NAME)
            .field("fate", &self.fate)
            .field("notify", &self.notify)
            .finish_non_exhaustive()
    }
}

/// A record to insert: its initial event, and optionally its key and metadata.
///
/// ```
/// # use statefold::{Machine, Metadata, NewRecord};
/// # #[derive(Debug, Clone, Machine)]
/// # #[machine(table = "doors")]
/// # enum Door {
/// #     #[initial]
/// #     Closed { who: String },
/// # }
/// let new = NewRecord::new(DoorClosed { who: "ada".into() }).with_metadata(Metadata::new().actor("ada"));
/// assert!(new.id.is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord<E: Event> {
    /// The key, for machines keyed by the caller (`#[machine(id = ..)]`).
    pub id: Option<<E::Machine as Machine>::Id>,
    /// The event creating the record, in an `#[initial]` state.
    pub event: E,
    /// Who and why, stored with the event.
    pub metadata: Metadata,
}

impl<E: Initial> NewRecord<E> {
    /// A record created by `event`, with a database-assigned key and no metadata.
    pub fn new(event: E) -> Self {
        Self { id: None, event, metadata: Metadata::default() }
    }

    /// Sets the key (for machines keyed by the caller).
    #[must_use]
    pub fn with_id(mut self, id: <E::Machine as Machine>::Id) -> Self {
        self.id = Some(id);
        self
    }

    /// Attaches metadata to the event.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Which rows [`Store::list`] returns: up to `limit`, with ids after `after`
/// (keyset paging: stable under concurrent inserts, cheap at any depth).
///
/// ```
/// use statefold::Page;
/// let first = Page::<i64>::first(50);
/// let next = Page::after(1234_i64, 50);
/// assert_eq!((first.after, next.after), (None, Some(1234)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<Id> {
    /// Only ids greater than this one (the last id of the previous page).
    pub after: Option<Id>,
    /// At most this many rows.
    pub limit: u32,
}

impl<Id> Page<Id> {
    /// The first `limit` rows.
    pub const fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// The `limit` rows after the one with id `after`.
    pub const fn after(after: Id, limit: u32) -> Self {
        Self { after: Some(after), limit }
    }
}

/// An event as stored: its position in the machine's log, and what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent<M: Machine> {
    /// The event's position: unique and increasing across the machine's events.
    pub position: i64,
    /// The record it changed.
    pub record_id: M::Id,
    /// The event, as the machine's enum.
    pub event: M,
    /// The state it left (`None` for the event creating the record).
    pub from: Option<M::Status>,
    /// The state it entered.
    pub to: M::Status,
    /// The record's version after it (1 for the creating event).
    pub version: i64,
    /// Who and why.
    pub metadata: Metadata,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

impl<M: Machine, B: Backend> Store<M, B> {
    /// Connects to `url` with [`Backend::connect`]'s settings.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a URL of another backend or a malformed one;
    /// [`Error::Database`] when the database cannot be reached.
    ///
    /// ```
    /// # use statefold::{Error, Machine, Sqlite, Store};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] Closed }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let error = Store::<Door, Sqlite>::connect("postgres://localhost/app").await.unwrap_err();
    /// assert!(matches!(error, Error::InvalidUrl { .. }));
    /// assert!(error.to_string().contains("the scheme is `postgres:`"));
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Ok(Self::new(B::connect(url).await?))
    }

    /// A store over an existing pool (build it from [`Backend::pool_options`]).
    /// Renders the machine's SQL once; clone the store rather than calling this again.
    pub fn new(pool: Pool<B::Db>) -> Self {
        let shared = Shared {
            queries: Queries::new::<B>(M::DEF),
            plan: B::plan(M::DEF),
            commits: watch::Sender::new(0),
            channel: crate::stream::channel(M::DEF),
        };
        Self { pool, shared: Arc::new(shared), fate: None, notify: false, machine: PhantomData }
    }

    /// Also wakes streams of other processes after each commit, where the
    /// backend can (PostgreSQL `NOTIFY`; elsewhere this does nothing).
    ///
    /// Off by default: a notification is one more statement per write, and
    /// PostgreSQL serialises the commits of notifying transactions. Streams
    /// in this process wake up after every commit through this store (or its
    /// clones) either way, and every stream also polls.
    #[must_use]
    pub fn with_notifications(mut self, on: bool) -> Self {
        self.notify = on && B::NOTIFY_SQL.is_some();
        self
    }

    /// Commits a transaction from [`begin`](Self::begin), then wakes the
    /// streams waiting for new events (a plain `tx.commit()` leaves them to
    /// their polling).
    ///
    /// # Errors
    /// [`Error::Database`] when the commit fails: nothing was written.
    pub async fn commit(&self, tx: Tx<'_, B>) -> Result<(), Error> {
        tx.commit().await.map_err(|e| self.failure(e, None))?;
        self.committed().await;
        Ok(())
    }

    /// Creates the tables shared by consumers if they do not exist
    /// ([`Backend::support_tables_sql`]): cursors, leases, dead letters.
    /// Migrations do this in production.
    ///
    /// # Errors
    /// [`Error::Database`] when the database refuses a statement.
    pub async fn create_support_tables(&self) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await?;
        for sql in B::support_tables_sql() {
            B::execute(&mut conn, &sql).await.map_err(|e| self.failure(e, None))?;
        }
        Ok(())
    }

    /// Wakes the streams waiting for events: this process's always, other
    /// processes' when notifications are on. A failed notification is not
    /// the write's failure (it is durable): their polling finds it.
    async fn committed(&self) {
        self.shared.commits.send_modify(|n| *n = n.wrapping_add(1));
        if let (true, Some(sql)) = (self.notify, B::NOTIFY_SQL) {
            let channel = Value::Text(self.shared.channel.clone());
            if let Ok(mut conn) = self.pool.acquire().await {
                if let Err(error) = B::execute_with(&mut conn, sql, &[(&channel, LogicalType::Text)]).await {
                    tracing::debug!(%error, "notification not sent; other processes' streams will poll");
                }
            }
        }
    }

    /// A receiver that changes after every commit through this store.
    pub(crate) fn commits(&self) -> watch::Receiver<u64> {
        self.shared.commits.subscribe()
    }

    /// The channel of cross-process wake-ups.
    pub(crate) fn channel(&self) -> &str {
        &self.shared.channel
    }

    /// The store's pool, for queries of your own.
    pub fn pool(&self) -> &Pool<B::Db> {
        &self.pool
    }

    /// Injects faults into this store's writes (tests only, usually); clones
    /// made afterwards share the same `fate`.
    #[must_use]
    pub fn with_fate(mut self, fate: Fate) -> Self {
        self.fate = Some(Arc::new(fate));
        self
    }

    /// The store's fault injector, if any.
    pub fn fate(&self) -> Option<&Fate> {
        self.fate.as_deref()
    }

    /// Creates the machine's tables and indexes if they do not exist
    /// ([`Backend::create_tables_sql`]). Migrations do this in production.
    ///
    /// # Errors
    /// [`Error::Database`] when the database refuses a statement.
    pub async fn create_tables(&self) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await?;
        for sql in B::create_tables_sql(M::DEF) {
            B::execute(&mut conn, &sql).await.map_err(|e| self.failure(e, None))?;
        }
        Ok(())
    }

    /// Opens a transaction in which several writes (`*_in` methods) commit
    /// or roll back together.
    ///
    /// # Errors
    /// [`Error::Database`] when no connection can be had.
    ///
    /// ```
    /// # use statefold::{Machine, Sqlite, Store};
    /// # #[derive(Debug, Clone, Machine)]
    /// # #[machine(table = "doors")]
    /// # enum Door { #[initial] Closed { who: String } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefold::Error> {
    /// # let store = Store::<Door, Sqlite>::connect("sqlite::memory:").await?;
    /// # store.create_tables().await?;
    /// let mut tx = store.begin().await?;
    /// let a = store.insert_in(&mut tx, DoorClosed { who: "ada".into() }).await?;
    /// let b = store.insert_in(&mut tx, DoorClosed { who: "bob".into() }).await?;
    /// tx.commit().await?;
    /// # assert!(store.find(a.id()).await?.is_some() && store.find(b.id()).await?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn begin(&self) -> Result<Tx<'static, B>, Error> {
        Ok(match B::BEGIN_WRITE {
            Some(begin) => self.pool.begin_with(begin).await?,
            None => self.pool.begin().await?,
        })
    }

    /// Inserts a record created by `event`, with a database-assigned id.
    ///
    /// Only for machines whose ids the database assigns ([`GeneratedId`](crate::GeneratedId)):
    /// give the key of any other with [`insert_with_id`](Self::insert_with_id).
    ///
    /// # Errors
    /// [`Error::Duplicate`] when a unique column's value is taken.
    pub async fn insert<E: Initial + Event<Machine = M>>(&self, event: E) -> Result<Record<M, E>, Error>
    where
        M: crate::GeneratedId,
    {
        self.create(NewRecord::new(event)).await
    }

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
        let write = self.insert_write(id.as_ref(), event.status(), event.encode(), &metadata)?;
        let written = self.write(&write).await?.ok_or(sqlx::Error::RowNotFound)?;
        self.inserted(&write, written).map(M::into_state)
    }

    /// Moves a record to the state of `event`, a value of the machine's enum
    /// known only at run time (from a request, say). The edge is checked
    /// against the declaration, then written as a guarded transition from the
    /// state and version just loaded.
    ///
    /// # Errors
    /// [`Error::InvalidTransition`] when the machine declares no edge from the
    /// record's state to the event's (nothing is written); [`Error::Conflict`]
    /// when the record changed between the load and the write;
    /// [`Error::NotFound`].
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
        let row = self.load_row(&mut *self.pool.acquire().await?, id).await?;
        let write =
            self.transition_write(id, row.status(), row.version(), event.status(), event.encode(), &metadata)?;
        match self.write(&write).await? {
            Some(written) => self.transitioned(written).map(M::into_state),
            None => Err(self.refusal(id, row.status(), row.version()).await),
        }
    }

    /// [`insert`](Self::insert) inside the caller's transaction.
    ///
    /// A failed write leaves the transaction as it was, and usable.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub async fn insert_in<E: Initial + Event<Machine = M>>(
        &self,
        tx: &mut Tx<'_, B>,
        event: E,
    ) -> Result<Record<M, E>, Error>
    where
        M: crate::GeneratedId,
    {
        self.create_in(tx, NewRecord::new(event)).await
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
            None => Err(self.refusal_on(tx, &transition.id, transition.from, transition.version).await),
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
        let row = self.load_row(tx, id).await?;
        let write =
            self.transition_write(id, row.status(), row.version(), event.status(), event.encode(), &metadata)?;
        match self.write_in(tx, &write).await? {
            Some(written) => self.transitioned(written).map(M::into_state),
            None => Err(self.refusal_on(tx, id, row.status(), row.version()).await),
        }
    }

    /// Loads a record as the typed handle of its current state.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::CorruptRow`] when the row does not fit the machine.
    pub async fn load(&self, id: &M::Id) -> Result<M::State, Error> {
        self.load_row(&mut *self.pool.acquire().await?, id).await.map(M::into_state)
    }

    /// Loads a record if it exists.
    ///
    /// # Errors
    /// [`Error::CorruptRow`] when the row does not fit the machine.
    pub async fn find(&self, id: &M::Id) -> Result<Option<M::State>, Error> {
        Ok(self.find_row(&mut *self.pool.acquire().await?, id).await?.map(M::into_state))
    }

    /// [`load`](Self::load) inside the caller's transaction (it sees the
    /// transaction's own writes).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn load_in(&self, tx: &mut Tx<'_, B>, id: &M::Id) -> Result<M::State, Error> {
        self.load_row(tx, id).await.map(M::into_state)
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
        let q = &self.shared.queries;
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
        let mut conn = self.pool.acquire().await?;
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
    pub async fn history(&self, id: &M::Id) -> Result<Vec<StoredEvent<M>>, Error> {
        let key = id.to_value();
        self.events(&self.shared.queries.history, &[(&key, M::DEF.id.ty)]).await
    }

    /// The record as it was at `at`: the fold of its events written up to
    /// then, or `None` if it did not exist yet. Timestamps are compared at
    /// microsecond precision.
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
        let events = self.events(&self.shared.queries.history_until, &binds).await?;
        fold::fold(&events).map_err(|message| Error::CorruptRow {
            machine: M::DEF.name,
            id: id.to_string(),
            message: format!("its events do not make a row: {message}"),
        })
    }

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
        let q = &self.shared.queries;
        let fail = |e| self.failure(e, None);
        let mut tx = self.pool.begin_with(B::BEGIN_SNAPSHOT).await.map_err(fail)?;
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
            audit_page::<M>(&mut report, &rows, &events);
            match upper {
                Some(upper) => lower = Some(upper),
                None => break,
            }
        }
        tx.rollback().await.map_err(fail)?;
        Ok(report)
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
        let positions = &self.shared.queries.state_columns[to.index()];
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
                names.cycle().take(self.shared.queries.guard_names).map(|name| Value::Text(name.to_owned())).collect()
            }),
            version: Value::I64(version),
            at: Value::Timestamp(fold::stored_time(Utc::now())),
            columns: columns.collect(),
            payload: Value::Json(encoded.payload),
            metadata: Value::Json(metadata),
        })
    }

    /// Runs a write in its own transaction (none on backends where it is one
    /// statement and no fault is to be injected), with the fault points.
    async fn write(&self, write: &Write) -> Result<Option<Written>, Error> {
        let plan = &self.shared.plan;
        if B::ONE_STATEMENT && self.fate.is_none() {
            let mut conn = self.pool.acquire().await?;
            let written = B::write(&mut conn, plan, write).await.map_err(|e| self.failure(e, write.id.as_ref()))?;
            drop(conn);
            if written.is_some() {
                self.committed().await;
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
        tx.commit().await.map_err(|e| self.failure(e, write.id.as_ref()))?;
        match self.strike(FaultPoint::AfterCommit) {
            Some(fault) => Err(fault),
            None => {
                self.committed().await;
                Ok(Some(written))
            }
        }
    }

    /// Runs a write inside the caller's transaction, under a savepoint so
    /// that a failure leaves the transaction as it was.
    async fn write_in(&self, tx: &mut Tx<'_, B>, write: &Write) -> Result<Option<Written>, Error> {
        let mut savepoint = sqlx::Acquire::begin(&mut *tx).await?;
        match B::write(&mut savepoint, &self.shared.plan, write).await {
            Ok(Some(written)) => {
                savepoint.commit().await?;
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

    pub(crate) fn strike(&self, point: FaultPoint) -> Option<Error> {
        self.fate.as_ref().and_then(|fate| fate.strike(point).err())
    }

    /// Why a guarded write matched no row, found outside the failed write.
    async fn refusal(&self, id: &M::Id, from: M::Status, version: i64) -> Error {
        match self.pool.acquire().await {
            Ok(mut conn) => self.refusal_on(&mut conn, id, from, version).await,
            Err(e) => e.into(),
        }
    }

    /// Why a guarded write matched no row: the record is gone, or it has
    /// another status or version than expected.
    async fn refusal_on(&self, conn: &mut Conn<B>, id: &M::Id, from: M::Status, version: i64) -> Error {
        let key = id.to_value();
        let (binds, types) = ([(&key, M::DEF.id.ty)], [LogicalType::Text, LogicalType::I64]);
        let row = match B::fetch_all(conn, &self.shared.queries.head, &binds, &types).await {
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
        for ((value, _), &i) in write.columns.iter().zip(&self.shared.queries.state_columns[write.state]) {
            columns[i] = value.clone();
        }
        let mut values = vec![written.id, write.status.clone(), Value::I64(1), write.at.clone(), write.at.clone()];
        values.extend(columns);
        self.row(values)
    }

    fn transitioned(&self, written: Written) -> Result<M::Row, Error> {
        self.row(written.row.ok_or(sqlx::Error::RowNotFound)?)
    }

    async fn find_row(&self, conn: &mut Conn<B>, id: &M::Id) -> Result<Option<M::Row>, Error> {
        let q = &self.shared.queries;
        let key = id.to_value();
        let rows = B::fetch_all(conn, &q.load, &[(&key, M::DEF.id.ty)], &q.row_types)
            .await
            .map_err(|e| self.failure(e, Some(&key)))?;
        rows.into_iter().next().map(|values| self.row(values)).transpose()
    }

    async fn load_row(&self, conn: &mut Conn<B>, id: &M::Id) -> Result<M::Row, Error> {
        self.find_row(conn, id).await?.ok_or_else(|| Error::NotFound { machine: M::DEF.name, id: id.to_string() })
    }

    /// A row from its values as read (header first).
    fn row(&self, values: Vec<Value>) -> Result<M::Row, Error> {
        let def = M::DEF;
        let mut values = values.into_iter();
        let id = values.next().unwrap_or(Value::Null);
        let id_text = fold::id_text(&id);
        let corrupt = |message: String| Error::CorruptRow { machine: def.name, id: id_text.clone(), message };
        let id = M::Id::from_value(id).map_err(|e| corrupt(format!("column `id`: {e}")))?;
        let status = match values.next() {
            Some(Value::Text(name)) => M::Status::from_db_name(&name)
                .ok_or_else(|| corrupt(format!("column `status`: `{name}` is not a state of {}", def.name)))?,
            _ => return Err(corrupt("column `status` is empty".into())),
        };
        let version = match values.next() {
            Some(Value::I64(version)) => version,
            _ => return Err(corrupt("column `version` is empty".into())),
        };
        let mut time = |column: &str| match values.next() {
            Some(Value::Timestamp(at)) => Ok(at),
            _ => Err(corrupt(format!("column `{column}` is empty"))),
        };
        let (created_at, updated_at) = (time("created_at")?, time("updated_at")?);
        let header = RowHeader { id, status, version, created_at, updated_at };
        M::Row::from_parts(header, values.collect()).map_err(|e| corrupt(e.to_string()))
    }

    /// The events a query returns.
    async fn events(&self, sql: &str, binds: &[Bind<'_>]) -> Result<Vec<StoredEvent<M>>, Error> {
        let mut conn = self.pool.acquire().await?;
        let rows = B::fetch_all(&mut conn, sql, binds, &self.shared.queries.event_types)
            .await
            .map_err(|e| self.failure(e, None))?;
        rows.into_iter().map(|values| self.event(values)).collect()
    }

    /// An event from its values as read, in `EVENT_COLUMNS` order.
    pub(crate) fn event(&self, values: Vec<Value>) -> Result<StoredEvent<M>, Error> {
        let machine = M::DEF.name;
        let mut values = values.into_iter();
        let mut next = || values.next().unwrap_or(Value::Null);
        let (position, record_id, kind, from, to, version, payload, metadata, created_at) =
            (next(), next(), next(), next(), next(), next(), next(), next(), next());
        let position = if let Value::I64(p) = position { p } else { 0 };
        let decode = |message: String| Error::Decode { machine, position, id: fold::id_text(&record_id), message };
        let status = |value: Value| match value {
            Value::Text(name) => {
                M::Status::from_db_name(&name).ok_or_else(|| decode(format!("`{name}` is not a state of {machine}")))
            }
            _ => Err(decode("a status is empty".into())),
        };
        let (kind, to) = (status(kind)?, status(to)?);
        let from = match from {
            Value::Null => None,
            other => Some(status(other)?),
        };
        // The JSON columns are read as text: decoded once, straight into their types.
        fn json(value: &Value) -> &str {
            match value {
                Value::Text(text) => text,
                _ => "null",
            }
        }
        let event = M::decode(kind, json(&payload)).map_err(|e| decode(format!("payload: {e}")))?;
        let metadata = serde_json::from_str(json(&metadata)).map_err(|e| decode(format!("metadata: {e}")))?;
        let (Value::I64(version), Value::Timestamp(created_at)) = (version, created_at) else {
            return Err(decode("version or time is empty".into()));
        };
        let record_id = M::Id::from_value(record_id.clone()).map_err(|e| decode(format!("record id: {e}")))?;
        Ok(StoredEvent { position, record_id, event, from, to, version, metadata, created_at })
    }

    /// A database error as the store reports it; `id` is the record written, if known.
    pub(crate) fn failure(&self, error: sqlx::Error, id: Option<&Value>) -> Error {
        match B::classify(&error) {
            Failure::Unique => {
                Error::Duplicate { machine: M::DEF.name, id: id.map(fold::id_text), message: database_message(&error) }
            }
            Failure::MissingTable(table) => Error::MissingTable { table },
            Failure::Unrepresentable => Error::Unrepresentable { backend: B::NAME, message: database_message(&error) },
            Failure::LockTimeout | Failure::Other => Error::Database(error),
        }
    }
}

fn database_message(error: &sqlx::Error) -> String {
    error.as_database_error().map_or_else(|| error.to_string(), |db| db.message().to_owned())
}

/// Audits one page: rows (by id) and the events of every record in their id range.
fn audit_page<M: Machine>(report: &mut AuditReport, rows: &[Vec<Value>], events: &[Vec<Value>]) {
    let mut seen = vec![false; rows.len()];
    // Events come grouped by record, in the same order as rows; a linear
    // search per group suffices for one page.
    for group in events.chunk_by(|a, b| a[1] == b[1]) {
        let record_id = &group[0][1];
        let row = rows.iter().position(|row| &row[0] == record_id);
        if let Some(i) = row {
            seen[i] = true;
        }
        fold::audit_record::<M>(report, fold::id_text(record_id), row.map(|i| rows[i].as_slice()), group);
    }
    for (row, _) in rows.iter().zip(seen).filter(|(_, seen)| !seen) {
        fold::audit_record::<M>(report, fold::id_text(&row[0]), Some(row), &[]);
    }
}
