//! SQLite's log: one writer at a time (`BEGIN IMMEDIATE`), so event ids
//! are given out in commit order and a read by id never skips one.

use super::Sqlite;
use crate::backend::log::{self, Blocker, Ctx, IdOrder, Log, Settled};
use crate::backend::render::{list, EVENT_COLUMNS};
use crate::backend::{Backend, Conn, DbRow};
use crate::error::Error;
use crate::schema::{LogicalType, MachineDef};
use crate::stream::Position;
use crate::value::Value;
use chrono::{DateTime, Utc};

/// SQLite's log queries.
#[doc(hidden)]
pub struct SqliteLog(IdOrder);

impl Log<Sqlite> for SqliteLog {
    type Gaps = ();

    fn new(def: &'static MachineDef) -> Self {
        Self(IdOrder::new::<Sqlite>(def))
    }

    fn gaps(&self) {}

    fn columns() -> String {
        list::<Sqlite>(EVENT_COLUMNS)
    }

    fn row_types(def: &MachineDef) -> Vec<LogicalType> {
        crate::backend::render::event_types(def)
    }

    fn types(&self) -> &[LogicalType] {
        &self.0.types
    }

    async fn read(
        &self,
        conn: &mut Conn<Sqlite>,
        after: Position,
        limit: u32,
    ) -> Result<Vec<DbRow<Sqlite>>, sqlx::Error> {
        let (id, limit) = (Value::I64(after.id()), Value::I64(i64::from(limit)));
        Sqlite::fetch_rows(conn, &self.0.read, &[(&id, LogicalType::I64), (&limit, LogicalType::I64)]).await
    }

    fn split(row: Vec<Value>) -> (Position, Vec<Value>) {
        (log::id_position(&row), row)
    }

    fn position(row: &[Value]) -> Position {
        log::id_position(row)
    }

    async fn settle(
        &self,
        (): &mut (),
        _: &Ctx<'_, Sqlite>,
        _: Position,
        rows: Vec<Vec<Value>>,
    ) -> Result<Settled, Error> {
        Ok(Settled { rows, held_back: false })
    }

    async fn head(&self, (): &mut (), ctx: &Ctx<'_, Sqlite>) -> Result<Position, Error> {
        Ok(self.end(ctx).await?.map_or(Position::START, |(position, _)| position))
    }

    async fn end(&self, ctx: &Ctx<'_, Sqlite>) -> Result<Option<(Position, DateTime<Utc>)>, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let rows = Sqlite::fetch_all(&mut conn, &self.0.end, &[], &[LogicalType::I64, LogicalType::Timestamp])
            .await
            .map_err(|e| ctx.fail(e))?;
        Ok(rows.first().and_then(|row| match row.as_slice() {
            [Value::I64(id), Value::Timestamp(at)] => Some((Position::new(0, *id), *at)),
            _ => None,
        }))
    }

    async fn first_after(&self, ctx: &Ctx<'_, Sqlite>, after: Position) -> Result<Option<DateTime<Utc>>, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let id = Value::I64(after.id());
        let rows =
            Sqlite::fetch_all(&mut conn, &self.0.first_after, &[(&id, LogicalType::I64)], &[LogicalType::Timestamp])
                .await
                .map_err(|e| ctx.fail(e))?;
        Ok(log::time(&rows))
    }

    async fn count_after(&self, ctx: &Ctx<'_, Sqlite>, after: Position) -> Result<u64, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let id = Value::I64(after.id());
        let rows = Sqlite::fetch_all(&mut conn, &self.0.count_after, &[(&id, LogicalType::I64)], &[LogicalType::I64])
            .await
            .map_err(|e| ctx.fail(e))?;
        Ok(log::count(&rows))
    }

    /// None: a reader never waits on SQLite.
    async fn blockers(&self, _: &Ctx<'_, Sqlite>) -> Result<Vec<Blocker>, Error> {
        Ok(Vec::new())
    }

    fn check(position: Position) -> Result<(), String> {
        log::check_id_position(Sqlite::NAME, position)
    }
}
