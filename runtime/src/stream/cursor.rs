//! Durable cursors, leases and dead letters: a consumer's rows in the shared tables.

use super::position::Position;
use super::sql::SupportSql;
use crate::backend::{Backend, Conn};
use crate::error::Error;
use crate::fold;
use crate::machine::Machine;
use crate::schema::LogicalType;
use crate::store::Store;
use crate::value::Value;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

/// One consumer's (and shard's) rows in the shared tables.
pub(crate) struct Rows<M: Machine, B: Backend> {
    store: Store<M, B>,
    sql: Arc<SupportSql>,
    stream: Value,
    consumer: Value,
    owner: Value,
}

impl<M: Machine, B: Backend> Rows<M, B> {
    pub(crate) fn new(store: Store<M, B>, consumer: &str, owner: &str) -> Self {
        Self {
            store,
            sql: Arc::new(SupportSql::new::<B>()),
            stream: Value::Text(M::DEF.events_table.to_owned()),
            consumer: Value::Text(consumer.to_owned()),
            owner: Value::Text(owner.to_owned()),
        }
    }

    fn fail(&self, error: sqlx::Error) -> Error {
        self.store.failure(error, None)
    }

    /// The saved position, creating the cursor at the start if it is new.
    pub(crate) async fn load(&self) -> Result<Position, Error> {
        let mut conn = self.store.pool().acquire().await?;
        let now = now();
        let binds =
            [(&self.stream, LogicalType::Text), (&self.consumer, LogicalType::Text), (&now, LogicalType::Timestamp)];
        B::execute_with(&mut conn, &self.sql.cursor_create, &binds).await.map_err(|e| self.fail(e))?;
        let rows = B::fetch_all(&mut conn, &self.sql.cursor_load, &binds[..2], &[LogicalType::I64, LogicalType::I64])
            .await
            .map_err(|e| self.fail(e))?;
        Ok(match rows.first().map(Vec::as_slice) {
            Some([Value::I64(tx), Value::I64(id)]) => Position::new(*tx, *id),
            _ => Position::START,
        })
    }

    /// Moves the cursor to `to` in `conn`'s transaction; `false` when it is
    /// already there or beyond (another instance got there first).
    pub(crate) async fn advance(&self, conn: &mut Conn<B>, to: Position) -> Result<bool, Error> {
        let (tx, id, at) = (Value::I64(to.tx()), Value::I64(to.id()), now());
        let binds = [
            (&tx, LogicalType::I64),
            (&id, LogicalType::I64),
            (&at, LogicalType::Timestamp),
            (&self.stream, LogicalType::Text),
            (&self.consumer, LogicalType::Text),
            (&tx, LogicalType::I64),
            (&tx, LogicalType::I64),
            (&id, LogicalType::I64),
        ];
        let changed = B::execute_with(conn, &self.sql.cursor_advance, &binds).await.map_err(|e| self.fail(e))?;
        Ok(changed == 1)
    }

    /// Puts the cursor back at the start in `conn`'s transaction.
    pub(crate) async fn reset(&self, conn: &mut Conn<B>) -> Result<(), Error> {
        let at = now();
        let binds =
            [(&at, LogicalType::Timestamp), (&self.stream, LogicalType::Text), (&self.consumer, LogicalType::Text)];
        B::execute_with(conn, &self.sql.cursor_reset, &binds).await.map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Takes the lease for `ttl`, or renews it; `false` while another
    /// instance holds it unexpired.
    pub(crate) async fn lease(&self, ttl: Duration) -> Result<bool, Error> {
        let mut conn = self.store.pool().acquire().await?;
        let now_ms = Utc::now().timestamp_millis();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let (now, expires) = (Value::I64(now_ms), Value::I64(now_ms.saturating_add(ttl_ms)));
        let take = [
            (&self.owner, LogicalType::Text),
            (&expires, LogicalType::I64),
            (&self.stream, LogicalType::Text),
            (&self.consumer, LogicalType::Text),
            (&self.owner, LogicalType::Text),
            (&now, LogicalType::I64),
        ];
        if B::execute_with(&mut conn, &self.sql.lease_take, &take).await.map_err(|e| self.fail(e))? == 1 {
            return Ok(true);
        }
        let create = [
            (&self.stream, LogicalType::Text),
            (&self.consumer, LogicalType::Text),
            (&self.owner, LogicalType::Text),
            (&expires, LogicalType::I64),
        ];
        // Whether the row was created is not to be told by the count (MySQL
        // counts a duplicate as found): taking it again says who holds it.
        B::execute_with(&mut conn, &self.sql.lease_create, &create).await.map_err(|e| self.fail(e))?;
        Ok(B::execute_with(&mut conn, &self.sql.lease_take, &take).await.map_err(|e| self.fail(e))? == 1)
    }

    /// Gives the lease up, if this instance holds it.
    pub(crate) async fn release(&self) -> Result<(), Error> {
        let mut conn = self.store.pool().acquire().await?;
        let binds =
            [(&self.stream, LogicalType::Text), (&self.consumer, LogicalType::Text), (&self.owner, LogicalType::Text)];
        B::execute_with(&mut conn, &self.sql.lease_release, &binds).await.map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Records a dead letter in `conn`'s transaction.
    pub(crate) async fn dead_letter(&self, conn: &mut Conn<B>, letter: DeadLetter) -> Result<(), Error> {
        let DeadLetter { position, record_id, kind, payload, metadata, error, attempts } = letter;
        let values = [
            Value::I64(position.tx()),
            Value::I64(position.id()),
            Value::Text(record_id),
            Value::Text(kind.to_owned()),
            Value::Json(payload),
            Value::Json(metadata),
            Value::Text(error),
            Value::I64(i64::from(attempts)),
            now(),
        ];
        let types = [
            LogicalType::I64,
            LogicalType::I64,
            LogicalType::Text,
            LogicalType::Text,
            LogicalType::Json,
            LogicalType::Json,
            LogicalType::Text,
            LogicalType::I64,
            LogicalType::Timestamp,
        ];
        let mut binds = vec![(&self.stream, LogicalType::Text), (&self.consumer, LogicalType::Text)];
        binds.extend(values.iter().zip(types));
        B::execute_with(conn, &self.sql.dead_letter, &binds).await.map_err(|e| self.fail(e))?;
        Ok(())
    }
}

/// An event a consumer gave up on, and why.
pub(crate) struct DeadLetter {
    pub(crate) position: Position,
    pub(crate) record_id: String,
    pub(crate) kind: &'static str,
    pub(crate) payload: serde_json::Value,
    pub(crate) metadata: serde_json::Value,
    pub(crate) error: String,
    pub(crate) attempts: u32,
}

/// The present time, at the precision every backend stores.
fn now() -> Value {
    Value::Timestamp(fold::stored_time(Utc::now()))
}
