//! A consumer's durable cursor: one forward-only position per stream and
//! consumer in `statefold_cursors`, moved in the handler's transaction.

use super::super::position::Position;
use crate::backend::render::{Params, CURSORS};
use crate::backend::{Backend, Conn};
use crate::error::Error;
use crate::fold;
use crate::machine::Machine;
use crate::schema::LogicalType;
use crate::store::Store;
use crate::value::Value;
use chrono::Utc;

/// The statements on `statefold_cursors`.
struct Sql {
    /// Creates a cursor at the start unless it exists. Binds: stream, consumer, at.
    create: String,
    /// A cursor's position. Binds: stream, consumer.
    load: String,
    /// Moves a cursor forward, never back. Binds: tx, id, at, stream, consumer, tx, tx, id.
    advance: String,
    /// Puts a cursor back at the start (rebuilds only). Binds: at, stream, consumer.
    reset: String,
}

impl Sql {
    fn new<B: Backend>() -> Self {
        let q = B::quote_ident;
        let key = |p: &mut Params<B>| format!("{} = {} AND {} = {}", q("stream"), p.next(), q("consumer"), p.next());
        let create = B::insert_if_absent(
            CURSORS,
            &["stream", "consumer", "tx", "position", "updated_at"],
            &[B::placeholder(1), B::placeholder(2), "0".into(), "0".into(), B::placeholder(3)],
            "stream",
        );
        let load =
            format!("SELECT {}, {} FROM {} WHERE {}", q("tx"), q("position"), q(CURSORS), key(&mut Params::new()));
        let advance = {
            let mut p = Params::<B>::new();
            let (tx, id, at) = (p.next(), p.next(), p.next());
            let key = key(&mut p);
            let (t1, t2, i) = (p.next(), p.next(), p.next());
            format!(
                "UPDATE {} SET {tx_c} = {tx}, {pos} = {id}, {} = {at} WHERE {key} AND ({tx_c} < {t1} OR ({tx_c} = {t2} AND {pos} < {i}))",
                q(CURSORS),
                q("updated_at"),
                tx_c = q("tx"),
                pos = q("position"),
            )
        };
        let reset = {
            let mut p = Params::<B>::new();
            let at = p.next();
            format!(
                "UPDATE {} SET {} = 0, {} = 0, {} = {at} WHERE {}",
                q(CURSORS),
                q("tx"),
                q("position"),
                q("updated_at"),
                key(&mut p)
            )
        };
        Self { create, load, advance, reset }
    }
}

/// One consumer's (and shard's) cursor.
pub(crate) struct Cursor<M: Machine, B: Backend> {
    store: Store<M, B>,
    sql: Sql,
    stream: Value,
    consumer: Value,
}

impl<M: Machine, B: Backend> Cursor<M, B> {
    pub(crate) fn new(store: Store<M, B>, consumer: &str) -> Self {
        Self {
            store,
            sql: Sql::new::<B>(),
            stream: Value::Text(M::DEF.events_table.to_owned()),
            consumer: Value::Text(consumer.to_owned()),
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
        B::execute_with(&mut conn, &self.sql.create, &binds).await.map_err(|e| self.fail(e))?;
        let rows = B::fetch_all(&mut conn, &self.sql.load, &binds[..2], &[LogicalType::I64, LogicalType::I64])
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
        let changed = B::execute_with(conn, &self.sql.advance, &binds).await.map_err(|e| self.fail(e))?;
        Ok(changed == 1)
    }

    /// Puts the cursor back at the start in `conn`'s transaction.
    pub(super) async fn reset(&self, conn: &mut Conn<B>) -> Result<(), Error> {
        let at = now();
        let binds =
            [(&at, LogicalType::Timestamp), (&self.stream, LogicalType::Text), (&self.consumer, LogicalType::Text)];
        B::execute_with(conn, &self.sql.reset, &binds).await.map_err(|e| self.fail(e))?;
        Ok(())
    }
}

/// The present time, at the precision every backend stores.
pub(super) fn now() -> Value {
    Value::Timestamp(fold::stored_time(Utc::now()))
}
