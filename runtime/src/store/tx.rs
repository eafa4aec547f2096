//! A transaction in which several writes commit or roll back together.

use super::Notifier;
use crate::backend::Backend;
use crate::error::Error;
use sqlx::Database;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// A transaction of a backend's database, as [`Store::begin`](crate::Store::begin)
/// opens it and consumers hand it to their handlers.
///
/// It dereferences to the database connection, so your own queries run in
/// it (`.execute(&mut **tx)` from a `&mut Tx`). Committing it through
/// [`commit`](Self::commit) wakes the streams of every machine a store wrote
/// in it; dropping it uncommitted rolls it back.
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
/// store.insert_in(&mut tx, DoorClosed { who: "ada".into() }).await?;
/// sqlx::query("UPDATE doors SET who = 'bob'").execute(&mut *tx).await?;
/// tx.commit().await?;
/// # Ok(())
/// # }
/// ```
pub struct Tx<'c, B: Backend> {
    inner: sqlx::Transaction<'c, B::Db>,
    /// The logs written in this transaction, to wake after its commit.
    written: Vec<Notifier>,
}

impl<B: Backend> fmt::Debug for Tx<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx").field("backend", &B::NAME).field("logs_written", &self.written.len()).finish()
    }
}

impl<'c, B: Backend> Tx<'c, B> {
    pub(crate) fn new(inner: sqlx::Transaction<'c, B::Db>) -> Self {
        Self { inner, written: Vec::new() }
    }

    /// Commits, then wakes the streams of the machines written in it.
    ///
    /// # Errors
    /// [`Error::Database`] when the commit fails: nothing was written.
    pub async fn commit(self) -> Result<(), Error> {
        self.inner.commit().await?;
        for notifier in &self.written {
            notifier.wake();
        }
        Ok(())
    }

    /// Rolls back: nothing written in it stays.
    ///
    /// # Errors
    /// [`Error::Database`] when the connection failed (the database rolls back anyway).
    pub async fn rollback(self) -> Result<(), Error> {
        Ok(self.inner.rollback().await?)
    }

    /// The sqlx transaction, for savepoints.
    pub(crate) fn transaction(&mut self) -> &mut sqlx::Transaction<'c, B::Db> {
        &mut self.inner
    }

    /// Remembers to wake `notifier`'s streams at commit.
    pub(crate) fn wrote(&mut self, notifier: &Notifier) {
        if !self.written.iter().any(|n| n.same(notifier)) {
            self.written.push(notifier.clone());
        }
    }
}

impl<B: Backend> Deref for Tx<'_, B> {
    type Target = <B::Db as Database>::Connection;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<B: Backend> DerefMut for Tx<'_, B> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}
