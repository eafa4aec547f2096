//! PostgreSQL's log: transaction fencing. Each event records the id of the
//! transaction that wrote it (`tx xid8`); readers take only events of
//! transactions older than every transaction still running (the fence,
//! `pg_snapshot_xmin(pg_current_snapshot())`), in `(tx, id)` order, so a
//! transaction that commits late is read in full, after those before it.

use super::Postgres;
use crate::backend::log::{self, Blocker, Ctx, Log, Settled};
use crate::backend::render::{list, Params, EVENT_COLUMNS};
use crate::backend::{Backend, Bind, Conn, DbRow};
use crate::error::Error;
use crate::schema::{LogicalType, MachineDef};
use crate::stream::Position;
use crate::value::Value;
use chrono::{DateTime, Utc};

/// PostgreSQL's log queries.
#[doc(hidden)]
pub struct PostgresLog {
    /// An events row as read, then `tx`.
    types: Vec<LogicalType>,
    /// Binds: tx, id, limit.
    read: String,
    /// Whether committed events follow a position, behind the fence or not.
    /// Binds: tx, id.
    fenced: String,
    /// No binds.
    head: String,
    /// No binds.
    end: String,
    /// Binds: tx, id.
    first_after: String,
    /// Binds: tx, id.
    count_after: String,
}

/// The fence: the oldest transaction still running, cluster-wide.
const FENCE: &str = "pg_snapshot_xmin(pg_current_snapshot())";

/// Who holds the fence: the session whose transaction it is, or a prepared
/// transaction nobody finished. `xid8` and `xid` meet as numbers (`xid` is
/// the low 32 bits).
const BLOCKERS: &str = "WITH fence AS (SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::numeric % 4294967296)::text AS xid) \
     SELECT 'pid ' || a.pid, coalesce(a.state, '?') || ' in a transaction since ' || coalesce(a.xact_start::text, '?') \
     || ', user ' || coalesce(a.usename::text, '?') || ', database ' || coalesce(a.datname::text, '?') \
     || ', last statement: ' || left(coalesce(a.query, ''), 200) \
     FROM pg_stat_activity a, fence WHERE a.backend_xid::text = fence.xid \
     UNION ALL SELECT 'prepared transaction ''' || p.gid || '''', 'prepared at ' || p.prepared::text || ' by ' || p.owner::text \
     || ' in database ' || p.database::text || ': finish it with COMMIT PREPARED or ROLLBACK PREPARED' \
     FROM pg_prepared_xacts p, fence WHERE p.transaction::text = fence.xid";

impl Log<Postgres> for PostgresLog {
    type Gaps = ();

    fn new(def: &'static MachineDef) -> Self {
        let q = Postgres::quote_ident;
        let (events, id, tx, at) = (q(def.events_table), q("id"), q("tx"), q("created_at"));
        let after = |p: &mut Params<Postgres>| {
            let (t, i) = (p.next(), p.next());
            // `xid8` has no cast from bigint: through text.
            format!("({tx}, {id}) > (CAST(CAST({t} AS TEXT) AS xid8), {i})")
        };
        let types = Self::row_types(def);
        let mut p = Params::<Postgres>::new();
        let read = format!(
            "SELECT {} FROM {events} WHERE {} AND {tx} < {FENCE} ORDER BY {tx}, {id} LIMIT {}",
            Self::columns(),
            after(&mut p),
            p.next()
        );
        Self {
            types,
            read,
            // Not only those behind the fence: the transaction holding it
            // may end between the read and this look, and then an event the
            // read could not return is in front of it, with no commit to
            // wake the reader.
            fenced: format!("SELECT EXISTS (SELECT 1 FROM {events} WHERE {})", after(&mut Params::new())),
            head: format!("SELECT {tx}, {id} FROM {events} WHERE {tx} < {FENCE} ORDER BY {tx} DESC, {id} DESC LIMIT 1"),
            end: format!("SELECT {tx}, {id}, {at} FROM {events} ORDER BY {tx} DESC, {id} DESC LIMIT 1"),
            first_after: format!(
                "SELECT {at} FROM {events} WHERE {} ORDER BY {tx}, {id} LIMIT 1",
                after(&mut Params::new())
            ),
            count_after: format!("SELECT COUNT(*) FROM {events} WHERE {}", after(&mut Params::new())),
        }
    }

    fn gaps(&self) {}

    /// The event's columns, then `tx`, read as is (the codec decodes
    /// `xid8`): a cast per row would cost the server a tenth of the read.
    fn columns() -> String {
        format!("{}, {}", list::<Postgres>(EVENT_COLUMNS), Postgres::quote_ident("tx"))
    }

    fn row_types(def: &MachineDef) -> Vec<LogicalType> {
        let mut types = crate::backend::render::event_types(def);
        types.push(LogicalType::I64);
        types
    }

    fn types(&self) -> &[LogicalType] {
        &self.types
    }

    async fn read(
        &self,
        conn: &mut Conn<Postgres>,
        after: Position,
        limit: u32,
    ) -> Result<Vec<DbRow<Postgres>>, sqlx::Error> {
        let (tx, id, limit) = (Value::I64(after.tx()), Value::I64(after.id()), Value::I64(i64::from(limit)));
        let binds = [(&tx, LogicalType::I64), (&id, LogicalType::I64), (&limit, LogicalType::I64)];
        Postgres::fetch_rows(conn, &self.read, &binds).await
    }

    fn split(mut row: Vec<Value>) -> (Position, Vec<Value>) {
        let position = Self::position(&row);
        row.pop();
        (position, row)
    }

    fn position(row: &[Value]) -> Position {
        match (row.first(), row.last()) {
            (Some(Value::I64(id)), Some(Value::I64(tx))) => Position::new(*tx, *id),
            _ => Position::new(i64::MAX, i64::MAX),
        }
    }

    async fn settle(
        &self,
        (): &mut (),
        ctx: &Ctx<'_, Postgres>,
        cursor: Position,
        rows: Vec<Vec<Value>>,
    ) -> Result<Settled, Error> {
        if !rows.is_empty() {
            return Ok(Settled { rows, held_back: false });
        }
        let mut conn = ctx.pool.acquire().await?;
        let (tx, id) = (Value::I64(cursor.tx()), Value::I64(cursor.id()));
        let fenced = Postgres::fetch_all(&mut conn, &self.fenced, &binds(&tx, &id), &[LogicalType::Bool])
            .await
            .map_err(|e| ctx.fail(e))?;
        let held_back = matches!(fenced.first().and_then(|r| r.first()), Some(Value::Bool(true)));
        Ok(Settled { rows, held_back })
    }

    /// The last event below the fence.
    async fn head(&self, (): &mut (), ctx: &Ctx<'_, Postgres>) -> Result<Position, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let rows = Postgres::fetch_all(&mut conn, &self.head, &[], &[LogicalType::I64, LogicalType::I64])
            .await
            .map_err(|e| ctx.fail(e))?;
        Ok(match rows.first().map(Vec::as_slice) {
            Some([Value::I64(tx), Value::I64(id)]) => Position::new(*tx, *id),
            _ => Position::START,
        })
    }

    async fn end(&self, ctx: &Ctx<'_, Postgres>) -> Result<Option<(Position, DateTime<Utc>)>, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let types = [LogicalType::I64, LogicalType::I64, LogicalType::Timestamp];
        let rows = Postgres::fetch_all(&mut conn, &self.end, &[], &types).await.map_err(|e| ctx.fail(e))?;
        Ok(rows.first().and_then(|row| match row.as_slice() {
            [Value::I64(tx), Value::I64(id), Value::Timestamp(at)] => Some((Position::new(*tx, *id), *at)),
            _ => None,
        }))
    }

    async fn first_after(&self, ctx: &Ctx<'_, Postgres>, after: Position) -> Result<Option<DateTime<Utc>>, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let (tx, id) = (Value::I64(after.tx()), Value::I64(after.id()));
        let rows = Postgres::fetch_all(&mut conn, &self.first_after, &binds(&tx, &id), &[LogicalType::Timestamp])
            .await
            .map_err(|e| ctx.fail(e))?;
        Ok(log::time(&rows))
    }

    async fn count_after(&self, ctx: &Ctx<'_, Postgres>, after: Position) -> Result<u64, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let (tx, id) = (Value::I64(after.tx()), Value::I64(after.id()));
        let rows = Postgres::fetch_all(&mut conn, &self.count_after, &binds(&tx, &id), &[LogicalType::I64])
            .await
            .map_err(|e| ctx.fail(e))?;
        Ok(log::count(&rows))
    }

    async fn blockers(&self, ctx: &Ctx<'_, Postgres>) -> Result<Vec<Blocker>, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let rows = Postgres::fetch_all(&mut conn, BLOCKERS, &[], &[LogicalType::Text, LogicalType::Text])
            .await
            .map_err(|e| ctx.fail(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match <[Value; 2]>::try_from(row) {
                Ok([Value::Text(who), Value::Text(detail)]) => Some(Blocker { who, detail }),
                _ => None,
            })
            .collect())
    }

    fn check(position: Position) -> Result<(), String> {
        if position == Position::START || position.tx() > 0 {
            Ok(())
        } else {
            Err(format!(
                "`{position}` has no transaction id: a PostgreSQL position reads `tx:id` (as its `Display` prints it), \
                 and an event id alone cannot say where the log stands"
            ))
        }
    }
}

fn binds<'a>(tx: &'a Value, id: &'a Value) -> [Bind<'a>; 2] {
    [(tx, LogicalType::I64), (id, LogicalType::I64)]
}
