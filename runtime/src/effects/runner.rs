//! Running `Effects` once per idempotency key, in one transaction.

use super::change::{AnyStore, Applied};
use super::sql::Sql;
use super::value::Effects;
use crate::backend::render::OUTBOX;
use crate::backend::{Backend, Failure};
use crate::error::Error;
use crate::fate::{Fate, FaultPoint};
use crate::machine::Machine;
use crate::schema::LogicalType;
use crate::store::{Notifier, Store, Tx};
use crate::value::Value;
use serde::{Deserialize, Serialize};
use sqlx::Pool;
use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What running effects did, as stored under their idempotency key and
/// returned to every later run with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Each transition, in order.
    pub transitions: Vec<Applied>,
    /// The id of each message and request put in the outbox, in order:
    /// destinations see it (the HTTP destination as `Idempotency-Key`).
    pub message_ids: Vec<String>,
}

/// The result of [`Runner::run`]: the outcome, and whether it is the one
/// of an earlier run with the same key (nothing was written this time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// What the run under this key did.
    pub outcome: Outcome,
    /// `true` when the key had been run already: this run wrote nothing.
    pub replayed: bool,
}

/// The longest idempotency key (the column is `VARCHAR(255)` on MySQL).
const MAX_KEY_BYTES: usize = 255;

/// Runs [`Effects`] under an idempotency key: every transition (row and
/// event, guarded as [`Store::apply`] guards them), one outbox row per
/// message and request, and the key with the [`Outcome`], in **one
/// transaction**. The same key again writes nothing and returns the first
/// outcome; concurrent runs with one key run once, the others wait for it
/// and return its outcome.
///
/// The runner applies transitions through the stores registered with
/// [`with_store`](Self::with_store), one per machine. Needs the support
/// tables ([`Store::create_support_tables`]).
///
/// **Keys expire** after [`key_ttl`](Self::key_ttl) (24 hours by default):
/// [`cleanup`](Self::cleanup) deletes expired keys, and a key used again
/// after its deletion runs again. Until then an expired key still stops a
/// replay. A failed run records nothing under its key, so it can be retried.
///
/// ```
/// use statefold::effects::{Effects, Message, Runner};
/// use statefold::{Machine, Sqlite, Store};
///
/// #[derive(Machine, Clone, Debug, PartialEq)]
/// #[machine(table = "cards")]
/// enum Card {
///     #[initial]
///     Active { customer: String },
///     #[from(Active)]
///     Blocked { reason: String },
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefold::Error> {
/// let cards = Store::<Card, Sqlite>::connect("sqlite::memory:").await?;
/// cards.create_tables().await?;
/// cards.create_support_tables().await?;
/// let runner = Runner::new(cards.pool().clone()).with_store(&cards);
///
/// let card = cards.insert(CardActive { customer: "ada".into() }).await?;
/// let effects = Effects::new()
///     .transition(card.transition(CardBlocked { reason: "lost".into() }))
///     .message(Message::new("card-status-changed", "1", &"blocked"));
///
/// let first = runner.run("block-1", &effects).await?;
/// let again = runner.run("block-1", &effects).await?;
/// assert!(!first.replayed && again.replayed);
/// assert_eq!(first.outcome, again.outcome);
/// assert_eq!(first.outcome.transitions[0].to, "Blocked");
/// # Ok(())
/// # }
/// ```
pub struct Runner<B: Backend> {
    pool: Pool<B::Db>,
    stores: HashMap<TypeId, Arc<dyn AnyStore<B>>>,
    key_ttl: Duration,
    fate: Option<Arc<Fate>>,
    sql: Arc<Sql>,
    /// Wakes this process's dispatchers after a commit.
    outbox: Notifier,
}

impl<B: Backend> Clone for Runner<B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            stores: self.stores.clone(),
            key_ttl: self.key_ttl,
            fate: self.fate.clone(),
            sql: Arc::clone(&self.sql),
            outbox: self.outbox.clone(),
        }
    }
}

impl<B: Backend> fmt::Debug for Runner<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("backend", &B::NAME)
            .field("machines", &self.stores.len())
            .field("key_ttl", &self.key_ttl)
            .field("fate", &self.fate)
            .finish_non_exhaustive()
    }
}

/// How a run under a key went, inside its transaction.
enum Step {
    /// It ran: the outcome, to commit.
    Ran(Outcome),
    /// The key was taken by a run that committed: roll back, read its outcome.
    Taken,
}

impl<B: Backend> Runner<B> {
    /// A runner over `pool` (the pool of the registered stores), with no
    /// stores yet and keys kept 24 hours.
    pub fn new(pool: Pool<B::Db>) -> Self {
        Self {
            pool,
            stores: HashMap::new(),
            key_ttl: Duration::from_secs(24 * 3600),
            fate: None,
            sql: Arc::new(Sql::new::<B>()),
            outbox: Notifier::named(OUTBOX),
        }
    }

    /// Applies transitions of `M`'s records through `store` (a clone of
    /// it; it should share the runner's pool, so one transaction holds all).
    #[must_use]
    pub fn with_store<M: Machine + Clone + fmt::Debug + PartialEq>(mut self, store: &Store<M, B>) -> Self {
        self.stores.insert(TypeId::of::<M>(), Arc::new(store.clone()));
        self
    }

    /// Keeps each key at least `ttl` after its run before
    /// [`cleanup`](Self::cleanup) may delete it (24 hours by default): a
    /// retry within that time is recognised as a replay.
    #[must_use]
    pub fn key_ttl(mut self, ttl: Duration) -> Self {
        self.key_ttl = ttl;
        self
    }

    /// Injects faults before and after the commit of each run (tests only,
    /// usually): [`FaultPoint::BeforeCommit`] rolls back,
    /// [`FaultPoint::AfterCommit`] reports an error for a run that is durable.
    #[must_use]
    pub fn with_fate(mut self, fate: Fate) -> Self {
        self.fate = Some(Arc::new(fate));
        self
    }

    /// The fault injector, if any: how many faults it injected.
    pub fn fate(&self) -> Option<&Fate> {
        self.fate.as_deref()
    }

    /// Runs `effects` under `key` in a transaction of its own.
    ///
    /// # Errors
    /// Before writing anything: [`Error::InvalidKey`], [`Error::InvalidEffect`]
    /// (a message or request built from bad input),
    /// [`Error::UnregisteredMachine`]. While writing, with everything rolled
    /// back and the key left free: what a transition returns
    /// ([`Error::Conflict`], [`Error::NotFound`], ..), [`Error::Database`].
    pub async fn run(&self, key: &str, effects: &Effects) -> Result<Ran, Error> {
        self.check(key, effects)?;
        let mut tx = self.begin().await?;
        match self.write(&mut tx, key, effects).await {
            Ok(Step::Ran(outcome)) => {
                if let Some(fault) = self.strike(FaultPoint::BeforeCommit) {
                    tx.rollback().await?;
                    return Err(fault);
                }
                tx.commit().await?;
                if let Some(fault) = self.strike(FaultPoint::AfterCommit) {
                    return Err(fault);
                }
                Ok(Ran { outcome, replayed: false })
            }
            Ok(Step::Taken) => {
                // The failed insert ended the transaction on PostgreSQL: read outside it.
                tx.rollback().await?;
                let mut conn = self.pool.acquire().await?;
                let outcome = self.outcome(&mut conn, key, &self.sql.read_key).await?;
                Ok(Ran { outcome, replayed: true })
            }
            Err(error) => {
                // The write's error is the one to report.
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    }

    /// Runs `effects` under `key` inside the caller's transaction, which
    /// commits them with its own writes (or rolls them back). On failure the
    /// transaction is left as it was (a savepoint), and usable. Run it at
    /// the database's default isolation (read committed on PostgreSQL).
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_in(&self, tx: &mut Tx<'_, B>, key: &str, effects: &Effects) -> Result<Ran, Error> {
        self.check(key, effects)?;
        let fail = fail::<B>;
        B::execute(&mut **tx, "SAVEPOINT statefold_effects").await.map_err(fail)?;
        match self.write(tx, key, effects).await {
            Ok(Step::Ran(outcome)) => {
                B::execute(&mut **tx, "RELEASE SAVEPOINT statefold_effects").await.map_err(fail)?;
                tx.wrote(&self.outbox);
                Ok(Ran { outcome, replayed: false })
            }
            Ok(Step::Taken) => {
                B::execute(&mut **tx, "ROLLBACK TO SAVEPOINT statefold_effects").await.map_err(fail)?;
                B::execute(&mut **tx, "RELEASE SAVEPOINT statefold_effects").await.map_err(fail)?;
                let outcome = self.outcome(&mut **tx, key, &self.sql.read_key_locked).await?;
                Ok(Ran { outcome, replayed: true })
            }
            Err(error) => {
                let _ = B::execute(&mut **tx, "ROLLBACK TO SAVEPOINT statefold_effects").await;
                let _ = B::execute(&mut **tx, "RELEASE SAVEPOINT statefold_effects").await;
                Err(error)
            }
        }
    }

    /// Deletes the keys whose time to live has passed; returns how many.
    /// Run it now and then (hourly, say): a key deleted no longer stops a replay.
    ///
    /// # Errors
    /// [`Error::Database`], [`Error::MissingTable`].
    pub async fn cleanup(&self) -> Result<u64, Error> {
        let mut conn = self.pool.acquire().await?;
        B::execute_with(&mut conn, &self.sql.expire_keys, &[]).await.map_err(fail::<B>)
    }

    /// The outcome stored under `key`, if a run under it committed and the key was not cleaned up.
    ///
    /// # Errors
    /// [`Error::Database`], [`Error::CorruptEffect`].
    pub async fn outcome_of(&self, key: &str) -> Result<Option<Outcome>, Error> {
        let mut conn = self.pool.acquire().await?;
        let k = Value::Text(key.to_owned());
        let rows = B::fetch_all(&mut conn, &self.sql.read_key, &[(&k, LogicalType::Text)], &[LogicalType::Json])
            .await
            .map_err(fail::<B>)?;
        rows.into_iter().next().map(|row| decode_outcome(key, row)).transpose()
    }

    fn check(&self, key: &str, effects: &Effects) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::InvalidKey { reason: "the key is empty".to_owned() });
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::InvalidKey { reason: format!("the key is {} bytes long", key.len()) });
        }
        effects.check()?;
        for change in effects.transitions() {
            if !self.stores.contains_key(&change.machine_type()) {
                return Err(Error::UnregisteredMachine { machine: change.machine() });
            }
        }
        Ok(())
    }

    async fn begin(&self) -> Result<Tx<'static, B>, Error> {
        let tx = match B::BEGIN_WRITE {
            Some(begin) => self.pool.begin_with(begin).await?,
            None => self.pool.begin().await?,
        };
        let mut tx = Tx::<B>::new(tx);
        tx.wrote(&self.outbox);
        Ok(tx)
    }

    fn strike(&self, point: FaultPoint) -> Option<Error> {
        self.fate.as_ref().and_then(|fate| fate.strike(point).err())
    }

    /// Takes the key, then writes the transitions, the outbox rows and the
    /// outcome. The key's insert comes first: a concurrent run with the
    /// same key waits on it (the unique key), and fails once this commits.
    async fn write(&self, tx: &mut Tx<'_, B>, key: &str, effects: &Effects) -> Result<Step, Error> {
        let k = Value::Text(key.to_owned());
        let now = Value::Timestamp(crate::fold::stored_time(chrono::Utc::now()));
        let ttl = Value::I64(i64::try_from(self.key_ttl.as_millis()).unwrap_or(i64::MAX / 4));
        let binds = [(&k, LogicalType::Text), (&now, LogicalType::Timestamp), (&ttl, LogicalType::I64)];
        match B::execute_with(&mut **tx, &self.sql.insert_key, &binds).await {
            Ok(_) => {}
            Err(e) if matches!(B::classify(&e), Failure::Unique) => return Ok(Step::Taken),
            Err(e) => return Err(fail::<B>(e)),
        }
        let mut outcome = Outcome::default();
        for change in effects.transitions() {
            let store = self
                .stores
                .get(&change.machine_type())
                .ok_or(Error::UnregisteredMachine { machine: change.machine() })?;
            outcome.transitions.push(store.apply_in(tx, change, key).await?);
        }
        for outgoing in effects.outgoing() {
            let id = uuid::Uuid::new_v4().to_string();
            let body = serde_json::to_value(outgoing)
                .map_err(|e| Error::InvalidEffect { what: outgoing.kind().to_owned(), reason: e.to_string() })?;
            let values = [
                (Value::Text(id.clone()), LogicalType::Text),
                (Value::Text(outgoing.kind().to_owned()), LogicalType::Text),
                (Value::Text(outgoing.key().to_owned()), LogicalType::Text),
                (Value::Json(body), LogicalType::Json),
                (k.clone(), LogicalType::Text),
                (now.clone(), LogicalType::Timestamp),
            ];
            let binds: Vec<_> = values.iter().map(|(v, ty)| (v, *ty)).collect();
            B::execute_with(&mut **tx, &self.sql.insert_outgoing, &binds).await.map_err(fail::<B>)?;
            outcome.message_ids.push(id);
        }
        let stored = serde_json::to_value(&outcome)
            .map_err(|e| Error::CorruptEffect { what: format!("outcome of key {key:?}"), message: e.to_string() })?;
        let stored = Value::Json(stored);
        B::execute_with(&mut **tx, &self.sql.finish_key, &[(&stored, LogicalType::Json), (&k, LogicalType::Text)])
            .await
            .map_err(fail::<B>)?;
        Ok(Step::Ran(outcome))
    }

    /// The outcome committed under `key`.
    async fn outcome(&self, conn: &mut crate::backend::Conn<B>, key: &str, read: &str) -> Result<Outcome, Error> {
        let k = Value::Text(key.to_owned());
        let rows =
            B::fetch_all(conn, read, &[(&k, LogicalType::Text)], &[LogicalType::Json]).await.map_err(fail::<B>)?;
        match rows.into_iter().next() {
            Some(row) => decode_outcome(key, row),
            None => Err(Error::CorruptEffect {
                what: format!("outcome of key {key:?}"),
                message: "the key was taken, then deleted before its outcome could be read".to_owned(),
            }),
        }
    }
}

fn decode_outcome(key: &str, row: Vec<Value>) -> Result<Outcome, Error> {
    let corrupt = |message: String| Error::CorruptEffect { what: format!("outcome of key {key:?}"), message };
    match row.into_iter().next() {
        Some(Value::Json(json)) => serde_json::from_value(json).map_err(|e| corrupt(e.to_string())),
        _ => Err(corrupt("no outcome was stored".to_owned())),
    }
}

fn fail<B: Backend>(error: sqlx::Error) -> Error {
    crate::backend::failure::<B>(error, "effects", None)
}
