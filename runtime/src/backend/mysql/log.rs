//! MySQL's log: hole probes. `AUTO_INCREMENT` ids are not commit order, so
//! a reader hands out ids without holes; a hole is probed with a locking
//! read, which waits for the transaction still inserting there and returns
//! what it committed; ids a probe does not find once they are known to have
//! been handed out for a grace period were rolled back, and are passed.

use super::MySql;
use crate::backend::log::{self, Blocker, Ctx, IdOrder, Log, Settled};
use crate::backend::render::{list, EVENT_COLUMNS};
use crate::backend::{Backend, Conn, DbRow, Failure};
use crate::error::Error;
use crate::schema::{LogicalType, MachineDef};
use crate::stream::Position;
use crate::value::Value;
use chrono::{DateTime, Utc};
use sqlx::mysql::MySqlConnection;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// MySQL's log queries.
#[doc(hidden)]
pub struct MySqlLog {
    ids: IdOrder,
    /// A locking read of the ids in a hole. Binds: first id, end id (excluded).
    probe: String,
}

/// A reader's view of the holes: `(largest id seen, when first seen)`,
/// increasing (every id below a seen one had been handed out by then), and
/// the connection that probes them, once a hole was seen.
#[doc(hidden)]
#[derive(Default)]
pub struct Holes {
    seen: VecDeque<(i64, Instant)>,
    prober: Option<MySqlConnection>,
}

/// How long taking the head may wait for running writers.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// The transactions that write rows (or wait for a lock, maybe to write
/// their first), oldest first, for the operator.
const BLOCKERS: &str = "SELECT CONCAT('thread ', trx_mysql_thread_id), \
     CONCAT(trx_state, ' since ', trx_started, ', ', trx_rows_modified, ' rows modified, query: ', \
     COALESCE(LEFT(trx_query, 200), '(none running)')) \
     FROM information_schema.innodb_trx \
     WHERE (trx_rows_modified > 0 OR trx_state = 'LOCK WAIT') AND trx_mysql_thread_id <> CONNECTION_ID() \
     ORDER BY trx_started";

impl Log<MySql> for MySqlLog {
    type Gaps = Holes;

    fn new(def: &'static MachineDef) -> Self {
        let q = MySql::quote_ident;
        let id = q("id");
        Self {
            ids: IdOrder::new::<MySql>(def),
            // `LOCK IN SHARE MODE`, not `FOR SHARE`: MariaDB knows only the former.
            probe: format!(
                "SELECT {} FROM {} WHERE {id} >= ? AND {id} < ? ORDER BY {id} LOCK IN SHARE MODE",
                list::<MySql>(EVENT_COLUMNS),
                q(def.events_table)
            ),
        }
    }

    fn gaps(&self) -> Holes {
        Holes::default()
    }

    fn columns() -> String {
        list::<MySql>(EVENT_COLUMNS)
    }

    fn row_types(def: &MachineDef) -> Vec<LogicalType> {
        crate::backend::render::event_types(def)
    }

    fn types(&self) -> &[LogicalType] {
        &self.ids.types
    }

    async fn read(
        &self,
        conn: &mut Conn<MySql>,
        after: Position,
        limit: u32,
    ) -> Result<Vec<DbRow<MySql>>, sqlx::Error> {
        let (id, limit) = (Value::I64(after.id()), Value::I64(i64::from(limit)));
        MySql::fetch_rows(conn, &self.ids.read, &[(&id, LogicalType::I64), (&limit, LogicalType::I64)]).await
    }

    fn split(row: Vec<Value>) -> (Position, Vec<Value>) {
        (log::id_position(&row), row)
    }

    fn position(row: &[Value]) -> Position {
        log::id_position(row)
    }

    /// A batch with a hole may stop short of its last row, and the reader
    /// would look again from the hole.
    fn can_read_ahead(cursor: Position, rows: usize, last: Position) -> bool {
        i64::try_from(rows).is_ok_and(|n| last.id() - cursor.id() == n)
    }

    async fn settle(
        &self,
        holes: &mut Holes,
        ctx: &Ctx<'_, MySql>,
        cursor: Position,
        rows: Vec<Vec<Value>>,
    ) -> Result<Settled, Error> {
        let Some(last) = rows.last().map(|row| row_id(row)) else { return Ok(Settled::default()) };
        if holes.seen.back().is_none_or(|(max, _)| *max < last) {
            holes.seen.push_back((last, Instant::now()));
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut expected = cursor.id() + 1;
        let mut rows = rows.into_iter().peekable();
        while let Some(next) = rows.peek().map(|row| row_id(row)) {
            if next == expected {
                out.extend(rows.next());
                expected += 1;
                continue;
            }
            // A hole: ids `expected..next` are missing, `next` is visible.
            // A probe that timed out proves nothing: stop at the hole and look again.
            let Some(found) = self.probe(holes, ctx, expected, next).await? else {
                return Ok(held_back(holes, cursor, out));
            };
            let passed = passed_before(holes, ctx.gap_grace);
            let mut found = found.into_iter().peekable();
            while expected < next {
                if found.peek().map(|row| row_id(row)) == Some(expected) {
                    out.extend(found.next());
                } else if expected >= passed {
                    return Ok(held_back(holes, cursor, out));
                }
                expected += 1;
            }
        }
        prune_seen(holes, cursor.id());
        // Found holes filled: the events are handed out, nothing waits.
        Ok(Settled { rows: out, held_back: false })
    }

    /// The last event, once every transaction that had written rows when
    /// called has ended. Any id below an event committed before the call
    /// was taken by such a transaction, if its writer is still running:
    /// once they have all ended, such ids are settled (committed or rolled
    /// back), and an event committed from then on comes after them.
    async fn head(&self, _: &mut Holes, ctx: &Ctx<'_, MySql>) -> Result<Position, Error> {
        let head = self.end(ctx).await?.map_or(Position::START, |(position, _)| position);
        let started = Instant::now();
        let mut waiting: Option<HashSet<String>> = None;
        loop {
            if let Some(running) = writers(ctx).await? {
                let waiting = match &mut waiting {
                    None => waiting.insert(running),
                    Some(waiting) => {
                        waiting.retain(|trx| running.contains(trx));
                        waiting
                    }
                };
                if waiting.is_empty() {
                    return Ok(head);
                }
            }
            if started.elapsed() >= SETTLE_LIMIT {
                let running = waiting.map(|waiting| waiting.len());
                return Err(Error::HeadNotSettled { machine: ctx.machine, waited: started.elapsed(), running });
            }
            // InnoDB rebuilds `innodb_trx` only when it was not read for
            // 100 ms: a random pause keeps two readers from taking turns
            // at keeping it old for each other.
            let pause = rand::random::<u64>() % 150;
            tokio::time::sleep(ctx.gap_retry.max(Duration::from_millis(150 + pause))).await;
        }
    }

    async fn end(&self, ctx: &Ctx<'_, MySql>) -> Result<Option<(Position, DateTime<Utc>)>, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let rows = MySql::fetch_all(&mut conn, &self.ids.end, &[], &[LogicalType::I64, LogicalType::Timestamp])
            .await
            .map_err(|e| ctx.fail(e))?;
        Ok(rows.first().and_then(|row| match row.as_slice() {
            [Value::I64(id), Value::Timestamp(at)] => Some((Position::new(0, *id), *at)),
            _ => None,
        }))
    }

    async fn first_after(&self, ctx: &Ctx<'_, MySql>, after: Position) -> Result<Option<DateTime<Utc>>, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let id = Value::I64(after.id());
        let rows =
            MySql::fetch_all(&mut conn, &self.ids.first_after, &[(&id, LogicalType::I64)], &[LogicalType::Timestamp])
                .await
                .map_err(|e| ctx.fail(e))?;
        Ok(log::time(&rows))
    }

    async fn count_after(&self, ctx: &Ctx<'_, MySql>, after: Position) -> Result<u64, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let id = Value::I64(after.id());
        let rows = MySql::fetch_all(&mut conn, &self.ids.count_after, &[(&id, LogicalType::I64)], &[LogicalType::I64])
            .await
            .map_err(|e| ctx.fail(e))?;
        Ok(log::count(&rows))
    }

    async fn blockers(&self, ctx: &Ctx<'_, MySql>) -> Result<Vec<Blocker>, Error> {
        let mut conn = ctx.pool.acquire().await?;
        let rows = MySql::fetch_all(&mut conn, BLOCKERS, &[], &[LogicalType::Text, LogicalType::Text])
            .await
            .map_err(|e| process_denied(ctx, e, "naming the transactions a stream waits behind"))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match <[Value; 2]>::try_from(row) {
                Ok([Value::Text(who), Value::Text(detail)]) => Some(Blocker { who, detail }),
                _ => None,
            })
            .collect())
    }

    fn check(position: Position) -> Result<(), String> {
        log::check_id_position(MySql::NAME, position)
    }

    /// Taking the head reads `information_schema.innodb_trx`, which needs
    /// the `PROCESS` privilege: checked before anything else.
    async fn check_start(&self, ctx: &Ctx<'_, MySql>, head: bool) -> Result<(), Error> {
        if !head {
            return Ok(());
        }
        let mut conn = ctx.pool.acquire().await?;
        MySql::fetch_all(&mut conn, "SELECT COUNT(*) FROM information_schema.innodb_trx", &[], &[LogicalType::I64])
            .await
            .map_err(|e| process_denied(ctx, e, "taking a stream's head"))?;
        Ok(())
    }
}

impl MySqlLog {
    /// The rows of ids `from..until` that exist, once their writers are done;
    /// `None` when a writer outlasted the lock wait timeout.
    async fn probe(
        &self,
        holes: &mut Holes,
        ctx: &Ctx<'_, MySql>,
        from: i64,
        until: i64,
    ) -> Result<Option<Vec<Vec<Value>>>, Error> {
        // A connection kept idle may have been closed by the server since
        // (`wait_timeout`): one failure on it earns a second try on a new one.
        if let Some(conn) = holes.prober.take() {
            match self.probe_on(holes, ctx, conn, from, until).await {
                Ok(rows) => return Ok(rows),
                Err(error) => tracing::debug!(%error, "probe failed on a kept connection; trying a new one"),
            }
        }
        let conn = open_prober(ctx).await?;
        self.probe_on(holes, ctx, conn, from, until).await
    }

    async fn probe_on(
        &self,
        holes: &mut Holes,
        ctx: &Ctx<'_, MySql>,
        mut conn: MySqlConnection,
        from: i64,
        until: i64,
    ) -> Result<Option<Vec<Vec<Value>>>, Error> {
        let (from, until) = (Value::I64(from), Value::I64(until));
        let binds = [(&from, LogicalType::I64), (&until, LogicalType::I64)];
        let mut tx = sqlx::Connection::begin(&mut conn).await.map_err(|e| ctx.fail(e))?;
        let rows = match MySql::fetch_all(&mut tx, &self.probe, &binds, &self.ids.types).await {
            Ok(rows) => Some(rows),
            // A writer slower than the lock wait timeout: look again later.
            Err(e) if MySql::classify(&e) == Failure::LockTimeout => None,
            Err(e) => return Err(ctx.fail(e)),
        };
        tx.commit().await.map_err(|e| ctx.fail(e))?;
        // Kept only when all went well: a failed connection is replaced.
        holes.prober = Some(conn);
        Ok(rows)
    }
}

/// A connection of the reader's own for probes, out of the pool: its
/// session settings stay with it, and if the reader is dropped during a
/// probe, the connection closes rather than going back to the pool with
/// its transaction open.
async fn open_prober(ctx: &Ctx<'_, MySql>) -> Result<MySqlConnection, Error> {
    let mut conn = ctx.pool.acquire().await?.detach();
    // READ COMMITTED: a locking read of a missing id takes no gap lock,
    // so it never blocks writers appending events.
    MySql::execute(&mut conn, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(|e| ctx.fail(e))?;
    // Wait on a writer a second at a time: a timed-out probe is simply
    // retried, and a short wait lets the stream notice shutdown.
    MySql::execute(&mut conn, "SET SESSION innodb_lock_wait_timeout = 1").await.map_err(|e| ctx.fail(e))?;
    Ok(conn)
}

/// The transactions that have written rows (or wait for a lock, maybe to
/// write their first), but the caller's; `None` when InnoDB served a copy
/// of `innodb_trx` made before this call (it keeps one while the table is
/// read more often than every 100 ms). The copy proves itself fresh by
/// showing this very statement, marked with a number used once, as the
/// query of the caller's own transaction.
async fn writers(ctx: &Ctx<'_, MySql>) -> Result<Option<HashSet<String>>, Error> {
    static MARKS: AtomicU64 = AtomicU64::new(0);
    let marker = format!("statefold settle {}", MARKS.fetch_add(1, Ordering::Relaxed));
    // The marker is a number of ours, not a value from outside.
    let sql = format!(
        "SELECT CAST(trx_id AS CHAR), trx_rows_modified > 0 OR trx_state = 'LOCK WAIT', \
         CASE WHEN trx_mysql_thread_id = CONNECTION_ID() THEN trx_query END, '{marker}' \
         FROM information_schema.innodb_trx"
    );
    // A transaction of our own, so that the table lists this connection.
    let mut tx = ctx.pool.begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(|e| ctx.fail(e))?;
    let types = [LogicalType::Text, LogicalType::I64, LogicalType::Text, LogicalType::Text];
    let rows = MySql::fetch_all(&mut tx, &sql, &[], &types)
        .await
        .map_err(|e| process_denied(ctx, e, "taking a stream's head"))?;
    tx.commit().await.map_err(|e| ctx.fail(e))?;
    let fresh = rows.iter().any(|row| matches!(row.get(2), Some(Value::Text(query)) if query.contains(&marker)));
    if !fresh {
        return Ok(None);
    }
    Ok(Some(
        rows.into_iter()
            .filter_map(|row| match row.as_slice() {
                [Value::Text(trx), Value::I64(1), Value::Null, _] => Some(trx.clone()),
                _ => None,
            })
            .collect(),
    ))
}

/// `PROCESS` denied is said as such; other errors as usual.
fn process_denied(ctx: &Ctx<'_, MySql>, error: sqlx::Error, what: &'static str) -> Error {
    if MySql::classify(&error) == Failure::AccessDenied {
        Error::PrivilegeRequired { backend: MySql::NAME, privilege: "PROCESS", what }
    } else {
        ctx.fail(error)
    }
}

/// Ids below this one were handed out at least `grace` ago.
fn passed_before(holes: &Holes, grace: Duration) -> i64 {
    let now = Instant::now();
    holes.seen.iter().take_while(|(_, at)| now.duration_since(*at) >= grace).last().map_or(i64::MIN, |(max, _)| *max)
}

/// Forgets seen ids at or below the cursor, except the last entry.
fn prune_seen(holes: &mut Holes, cursor: i64) {
    while holes.seen.len() > 1 && holes.seen.get(1).is_some_and(|(max, _)| *max <= cursor) {
        holes.seen.pop_front();
    }
}

fn held_back(holes: &mut Holes, cursor: Position, rows: Vec<Vec<Value>>) -> Settled {
    prune_seen(holes, cursor.id());
    Settled { rows, held_back: true }
}

fn row_id(row: &[Value]) -> i64 {
    log::id_position(row).id()
}
