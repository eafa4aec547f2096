//! The store: one machine's records (rows) and events, kept in step.
//!
//! [`Store`] is a thin handle over one shared [`Inner`]: the pool, the SQL
//! rendered once for the machine, the backend's write plan, the notifier
//! of the machine's streams. Its methods live by concern: [`write`] (inserts,
//! transitions, the write runner and the diagnosis of a refused write),
//! [`read`] (loads, lists, history, as-of), [`decode`] (rows and events
//! from their stored values), [`audit`], [`tx`] (the caller's transactions)
//! and [`notify`] (wake-ups after commits).

mod audit;
mod decode;
mod notify;
mod read;
mod repair;
mod schema;
mod tx;
mod write;

pub use repair::{Repair, RepairOptions, RepairReport};
pub use tx::Tx;

pub(crate) use notify::Notifier;

use crate::backend::render::Queries;
use crate::backend::Backend;
use crate::error::Error;
use crate::fate::{Fate, FaultPoint};
use crate::machine::{Event, Initial, Machine, Metadata, Record};
use crate::value::Value;
use sqlx::Pool;
use std::fmt;
use std::sync::Arc;

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
    inner: Arc<Inner<M, B>>,
}

/// What every clone of a store shares.
struct Inner<M: Machine, B: Backend> {
    pool: Pool<B::Db>,
    sql: Arc<Rendered<B>>,
    /// Wakes this process's streams of the machine after each commit.
    notifier: Notifier,
    /// Wakes other processes' streams (PostgreSQL `NOTIFY` in each write).
    notify: Option<Value>,
    fate: Option<Arc<Fate>>,
    machine: std::marker::PhantomData<fn() -> M>,
}

/// The machine's SQL, rendered once per store.
struct Rendered<B: Backend> {
    queries: Queries,
    plan: B::Plan,
}

impl<M: Machine, B: Backend> Clone for Inner<M, B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: Arc::clone(&self.sql),
            notifier: self.notifier.clone(),
            notify: self.notify.clone(),
            fate: self.fate.clone(),
            machine: std::marker::PhantomData,
        }
    }
}

impl<M: Machine, B: Backend> Clone for Store<M, B> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<M: Machine, B: Backend> fmt::Debug for Store<M, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("machine", &M::DEF.name)
            .field("backend", &B::NAME)
            .field("fate", &self.inner.fate)
            .field("notify", &self.inner.notify.is_some())
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
        let sql = Rendered { queries: Queries::new::<B>(M::DEF), plan: B::plan(M::DEF) };
        let inner = Inner {
            pool,
            sql: Arc::new(sql),
            notifier: Notifier::of(M::DEF),
            notify: None,
            fate: None,
            machine: std::marker::PhantomData,
        };
        Self { inner: Arc::new(inner) }
    }

    /// A store like this one, with `change` made to its settings (clones
    /// made before keep theirs).
    fn with(self, change: impl FnOnce(&mut Inner<M, B>)) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        change(&mut inner);
        Self { inner: Arc::new(inner) }
    }

    /// Also wakes streams of other processes after each commit, where the
    /// backend can (PostgreSQL `NOTIFY`, sent by the write's own statement
    /// and delivered when its transaction commits; elsewhere this does
    /// nothing).
    ///
    /// Off by default: PostgreSQL serialises the commits of notifying
    /// transactions. Streams in this process wake up after every commit
    /// through any store of the machine either way, and every stream also polls.
    #[must_use]
    pub fn with_notifications(self, on: bool) -> Self {
        let channel = (on && B::NOTIFIES).then(|| Value::Text(crate::stream::channel(M::DEF)));
        self.with(|inner| inner.notify = channel)
    }

    /// Creates the tables shared by consumers, repairs and effects if they
    /// do not exist ([`Backend::support_tables_sql`]): cursors, leases, dead
    /// letters, repairs, idempotency keys, the outbox.
    /// Migrations do this in production.
    ///
    /// # Errors
    /// [`Error::Database`] when the database refuses a statement.
    pub async fn create_support_tables(&self) -> Result<(), Error> {
        let mut conn = self.inner.pool.acquire().await?;
        for sql in B::support_tables_sql() {
            B::execute(&mut conn, &sql).await.map_err(|e| self.failure(e, None))?;
        }
        Ok(())
    }

    /// Wakes this process's streams of the machine.
    pub(crate) fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    /// The store's pool, for queries of your own.
    pub fn pool(&self) -> &Pool<B::Db> {
        &self.inner.pool
    }

    /// Injects faults into this store's writes (tests only, usually); clones
    /// made afterwards share the same `fate`.
    #[must_use]
    pub fn with_fate(self, fate: Fate) -> Self {
        self.with(|inner| inner.fate = Some(Arc::new(fate)))
    }

    /// The store's fault injector, if any.
    pub fn fate(&self) -> Option<&Fate> {
        self.inner.fate.as_deref()
    }

    /// A fault, when fate strikes at `point`.
    pub(crate) fn strike(&self, point: FaultPoint) -> Option<Error> {
        self.inner.fate.as_ref().and_then(|fate| fate.strike(point).err())
    }

    /// A database error as the store reports it; `id` is the record written, if known.
    pub(crate) fn failure(&self, error: sqlx::Error, id: Option<&Value>) -> Error {
        crate::backend::failure::<B>(error, M::DEF.name, id)
    }

    /// Creates the machine's tables and indexes if they do not exist
    /// ([`Backend::create_tables_sql`]). Migrations do this in production.
    ///
    /// # Errors
    /// [`Error::Database`] when the database refuses a statement.
    pub async fn create_tables(&self) -> Result<(), Error> {
        let mut conn = self.inner.pool.acquire().await?;
        for sql in B::create_tables_sql(M::DEF) {
            B::execute(&mut conn, &sql).await.map_err(|e| self.failure(e, None))?;
        }
        Ok(())
    }

    /// Opens a transaction in which several writes (`*_in` methods) commit
    /// or roll back together. Committing it wakes the streams of every
    /// machine written in it.
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
        let tx = match B::BEGIN_WRITE {
            Some(begin) => self.inner.pool.begin_with(begin).await?,
            None => self.inner.pool.begin().await?,
        };
        Ok(Tx::new(tx))
    }

    // `insert` and `insert_in` live here, in `Store`'s own module, so that
    // the compile error for a machine keyed by the caller names them as
    // `Store::insert`, not by the file they would otherwise be in.

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
}
