//! The reader under every stream and consumer: batched, gap-safe reads from
//! a position, and waiting for the next commit.

use super::metrics;
use super::position::{Envelope, Position, Start};
use super::sql::StreamSql;
use super::StreamOptions;
use crate::backend::{Backend, Bind, Conn, DbRow, Failure, GapSafety, WakeUps};
use crate::error::Error;
use crate::machine::Machine;
use crate::schema::LogicalType;
use crate::store::{Store, StoredEvent};
use crate::value::Value;
use futures::StreamExt;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Reads a machine's events in position order, a batch at a time, never
/// past an event whose transaction may still commit.
pub(crate) struct Reader<M: Machine, B: Backend> {
    store: Store<M, B>,
    sql: Arc<StreamSql>,
    options: StreamOptions,
    /// The last position handed out.
    cursor: Position,
    /// An error found after the events already handed out, reported next.
    pending: Option<Error>,
    wake: Wake,
    /// When the reader started waiting on a hole or the fence, if it is.
    stalled: Option<Instant>,
    /// Whether to look again soon rather than wait for a commit: events are
    /// held back by a transaction that may end without waking anyone.
    retry_soon: bool,
    /// MySQL: `(largest id seen, when first seen)`, increasing. Every id
    /// below a seen id had been handed out by then.
    seen: VecDeque<(i64, Instant)>,
    /// The read of the batch after a full one, started before it is asked
    /// for, so that the database works while the caller decodes and
    /// handles: the raw rows after the position it starts from.
    ahead: Option<ReadAhead<B>>,
    /// MySQL: the connection that probes holes, once one was seen.
    prober: Option<Conn<B>>,
}

/// MySQL: how long taking the head may wait for running writers.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// A batch being read in the background.
struct ReadAhead<B: Backend> {
    after: Position,
    rows: tokio::task::JoinHandle<Result<Vec<DbRow<B>>, sqlx::Error>>,
}

impl<B: Backend> Drop for ReadAhead<B> {
    /// A read ahead nobody will use is not worth finishing.
    fn drop(&mut self) {
        self.rows.abort();
    }
}

impl<M: Machine, B: Backend> Reader<M, B> {
    /// A reader from `start`; resolving [`Start::Head`] reads the database.
    pub(crate) async fn open(store: Store<M, B>, options: StreamOptions, start: Start) -> Result<Self, Error> {
        let sql = Arc::new(StreamSql::new::<B>(M::DEF));
        let wake = Wake::new(&store, &options).await?;
        let mut reader = Self {
            store,
            sql,
            options,
            cursor: Position::START,
            pending: None,
            wake,
            stalled: None,
            retry_soon: false,
            seen: VecDeque::new(),
            ahead: None,
            prober: None,
        };
        reader.cursor = match start {
            Start::Beginning => Position::START,
            Start::After(position) => position,
            Start::Head => reader.head().await?,
        };
        Ok(reader)
    }

    /// The last position handed out.
    pub(crate) fn cursor(&self) -> Position {
        self.cursor
    }

    /// Continues after `position` (a cursor read back from the database).
    pub(crate) fn seek(&mut self, position: Position) {
        self.cursor = position;
        self.pending = None;
        self.stalled = None;
        self.seen.clear();
        self.ahead = None;
    }

    /// A position after which a stream misses nothing committed once this
    /// returns ([`Position::START`] for an empty log): on PostgreSQL the
    /// last event below the fence; on MySQL the last event, once every
    /// transaction that may hold an earlier id has ended.
    // `&mut self`: the reader is `Send` but not `Sync` (its wake-up stream).
    pub(crate) async fn head(&mut self) -> Result<Position, Error> {
        let sql = Arc::clone(&self.sql);
        let head = self.position(&sql.head).await?;
        if B::GAP_SAFETY == GapSafety::LockProbe {
            self.settle_writers().await?;
        }
        Ok(head)
    }

    /// The last committed event's position, even if a stream cannot hand
    /// it out yet (it waits behind a transaction still running): where the
    /// log ends now, for lag and rebuilds.
    pub(crate) async fn end(&mut self) -> Result<Position, Error> {
        let sql = Arc::clone(&self.sql);
        self.position(&sql.end).await
    }

    async fn position(&mut self, sql: &str) -> Result<Position, Error> {
        let mut conn = self.store.pool().acquire().await?;
        let rows =
            B::fetch_all(&mut conn, sql, &[], &[LogicalType::I64, LogicalType::I64]).await.map_err(|e| self.fail(e))?;
        Ok(rows.into_iter().next().map_or(Position::START, |row| match row.as_slice() {
            [Value::I64(tx), Value::I64(id)] => Position::new(*tx, *id),
            _ => Position::START,
        }))
    }

    /// MySQL: waits until every transaction that had written rows when
    /// called has ended. Any id below an event committed before the call
    /// was taken by such a transaction, if its writer is still running:
    /// once they have all ended, such ids are settled (committed or rolled
    /// back), and an event committed from then on comes after them.
    async fn settle_writers(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let mut waiting: Option<HashSet<String>> = None;
        loop {
            if let Some(running) = self.writers().await? {
                let waiting = match &mut waiting {
                    None => waiting.insert(running),
                    Some(waiting) => {
                        waiting.retain(|trx| running.contains(trx));
                        waiting
                    }
                };
                if waiting.is_empty() {
                    return Ok(());
                }
            }
            if started.elapsed() >= SETTLE_LIMIT {
                let running = waiting.map(|waiting| waiting.len());
                return Err(Error::HeadNotSettled { machine: M::DEF.name, waited: started.elapsed(), running });
            }
            // InnoDB rebuilds `innodb_trx` only when it was not read for
            // 100 ms: a random pause keeps two readers from taking turns
            // at keeping it old for each other.
            let pause = rand::random::<u64>() % 150;
            tokio::time::sleep(self.options.gap_retry.max(Duration::from_millis(150 + pause))).await;
        }
    }

    /// MySQL: the transactions that have written rows (or wait for a lock,
    /// maybe to write their first), but the caller's;
    /// `None` when InnoDB served a copy of `innodb_trx` made before this
    /// call (it keeps one while the table is read more often than every
    /// 100 ms). The copy proves itself fresh by showing this very
    /// statement, marked with a number used once, as the query of the
    /// caller's own transaction.
    async fn writers(&mut self) -> Result<Option<HashSet<String>>, Error> {
        static MARKS: AtomicU64 = AtomicU64::new(0);
        let marker = format!("statefold settle {}", MARKS.fetch_add(1, Ordering::Relaxed));
        // The marker is a number of ours, not a value from outside.
        let sql = format!(
            "SELECT CAST(trx_id AS CHAR), trx_rows_modified > 0 OR trx_state = 'LOCK WAIT', \
             CASE WHEN trx_mysql_thread_id = CONNECTION_ID() THEN trx_query END, '{marker}' \
             FROM information_schema.innodb_trx"
        );
        // A transaction of our own, so that the table lists this connection.
        let mut tx = self
            .store
            .pool()
            .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(|e| self.fail(e))?;
        let types = [LogicalType::Text, LogicalType::I64, LogicalType::Text, LogicalType::Text];
        let rows = B::fetch_all(&mut tx, &sql, &[], &types).await.map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
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

    /// How many events follow `after`, up to the present end of the log.
    pub(crate) async fn count_after(&mut self, after: Position) -> Result<u64, Error> {
        let mut conn = self.store.pool().acquire().await?;
        let (tx, id) = (Value::I64(after.tx()), Value::I64(after.id()));
        let binds = position_binds::<B>(&tx, &id);
        let rows = B::fetch_all(&mut conn, &self.sql.count_after, &binds, &[LogicalType::I64])
            .await
            .map_err(|e| self.store.failure(e, None))?;
        Ok(match rows.first().and_then(|row| row.first()) {
            Some(Value::I64(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        })
    }

    /// The next events after the cursor, at most one batch; empty when none
    /// can be handed out yet. Moves the cursor past them.
    ///
    /// # Errors
    /// An event that cannot be decoded ([`Error::Decode`], naming its
    /// position) is reported after the events before it, and again on every
    /// later call: the reader never skips it.
    pub(crate) async fn fetch(&mut self) -> Result<Vec<Envelope<M>>, Error> {
        if let Some(error) = &self.pending {
            return Err(clone_decode(error));
        }
        let rows = self.read().await?;
        let mut events = Vec::with_capacity(rows.len());
        for values in rows {
            match self.envelope(values) {
                Ok(envelope) => {
                    self.cursor = envelope.position;
                    events.push(envelope);
                }
                Err(error) => {
                    if events.is_empty() {
                        self.pending = Some(clone_decode(&error));
                        return Err(error);
                    }
                    self.pending = Some(error);
                    break;
                }
            }
        }
        match (events.is_empty(), self.stalled) {
            (false, Some(since)) if !self.retry_soon => {
                metrics::gap_waited(M::DEF.events_table, since.elapsed());
                self.stalled = None;
            }
            _ => {}
        }
        Ok(events)
    }

    /// Waits for a reason to look again: a commit in this process, a
    /// notification from another, the gap retry when events are held back,
    /// or the poll interval; at most `max`.
    pub(crate) async fn wait(&mut self, max: Duration) {
        let pause = if self.retry_soon { self.options.gap_retry } else { self.options.poll_interval };
        self.wake.wait(pause.min(max)).await;
    }

    async fn read(&mut self) -> Result<Vec<Vec<Value>>, Error> {
        self.retry_soon = false;
        // The rows are read into values here, not in the read ahead's task:
        // the database answers the next read meanwhile.
        let rows = match self.ahead.take() {
            Some(mut ahead) if ahead.after == self.cursor => match (&mut ahead.rows).await {
                Ok(rows) => rows.map_err(|e| self.fail(e))?,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Err(join) => return Err(Error::Database(sqlx::Error::Protocol(format!("read-ahead failed: {join}")))),
            },
            _ => {
                // Commits before this point need no wake-up: the query sees them.
                self.wake.mark_seen();
                let mut conn = self.store.pool().acquire().await?;
                read_batch::<B>(&mut conn, &self.sql, self.cursor, self.options.batch_size)
                    .await
                    .map_err(|e| self.fail(e))?
            }
        };
        if rows.len() >= self.options.batch_size as usize {
            self.read_ahead(&rows)?;
        }
        // The driver's rows go as soon as they are read: two batches at most.
        let rows = B::read_rows(&{ rows }, &self.sql.types).map_err(|e| self.fail(e))?;
        match B::GAP_SAFETY {
            GapSafety::SingleWriter => Ok(rows),
            GapSafety::XidFence => {
                if rows.is_empty() {
                    let mut conn = self.store.pool().acquire().await?;
                    let (tx, id) = (Value::I64(self.cursor.tx()), Value::I64(self.cursor.id()));
                    let binds = position_binds::<B>(&tx, &id);
                    let fenced = B::fetch_all(&mut conn, &self.sql.fenced, &binds, &[LogicalType::Bool])
                        .await
                        .map_err(|e| self.fail(e))?;
                    if matches!(fenced.first().and_then(|r| r.first()), Some(Value::Bool(true))) {
                        self.stall();
                    }
                }
                Ok(rows)
            }
            GapSafety::LockProbe => self.fill_holes(rows).await,
        }
    }

    /// Starts reading the batch after `rows`, a full batch: more is likely
    /// to follow. Wasted (and dropped) if the caller does not go on from
    /// the last of `rows` (a hole, an undecodable event, a seek).
    fn read_ahead(&mut self, rows: &[DbRow<B>]) -> Result<(), Error> {
        let Some(last) = rows.last() else { return Ok(()) };
        let last = B::read_rows(std::slice::from_ref(last), &self.sql.types).map_err(|e| self.fail(e))?;
        let Some(after) = last.first().map(|row| raw_position::<B>(row)) else { return Ok(()) };
        // MySQL: a batch with a hole may stop short of its last row, and the
        // reader would look again from the hole.
        let holes = i64::try_from(rows.len()).map_or(true, |n| after.id() - self.cursor.id() != n);
        if B::GAP_SAFETY == GapSafety::LockProbe && holes {
            return Ok(());
        }
        self.wake.mark_seen();
        let (pool, sql, batch) = (self.store.pool().clone(), Arc::clone(&self.sql), self.options.batch_size);
        let rows = tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            read_batch::<B>(&mut conn, &sql, after, batch).await
        });
        self.ahead = Some(ReadAhead { after, rows });
        Ok(())
    }

    /// MySQL: keeps the events that follow the cursor without a hole. A hole
    /// is probed with a locking read, which waits for a transaction still
    /// inserting there and returns what it committed; ids that the probe
    /// does not find once the grace period has passed since they were first
    /// known to be handed out will never exist (rolled back), and are passed.
    async fn fill_holes(&mut self, rows: Vec<Vec<Value>>) -> Result<Vec<Vec<Value>>, Error> {
        let Some(last) = rows.last().map(|row| row_id(row)) else { return Ok(rows) };
        if self.seen.back().is_none_or(|(max, _)| *max < last) {
            self.seen.push_back((last, Instant::now()));
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut expected = self.cursor.id() + 1;
        let mut rows = rows.into_iter().peekable();
        while let Some(next) = rows.peek().map(|row| row_id(row)) {
            if next == expected {
                out.extend(rows.next());
                expected += 1;
                continue;
            }
            // A hole: ids `expected..next` are missing, `next` is visible.
            self.stall();
            // A probe that timed out proves nothing: stop at the hole and look again.
            let Some(found) = self.probe(expected, next).await? else {
                return Ok(self.held_back(out));
            };
            let passed = self.passed_before();
            let mut found = found.into_iter().peekable();
            while expected < next {
                if found.peek().map(|row| row_id(row)) == Some(expected) {
                    out.extend(found.next());
                } else if expected >= passed {
                    return Ok(self.held_back(out));
                }
                expected += 1;
            }
        }
        self.prune_seen();
        Ok(out)
    }

    /// The rows of ids `from..until` that exist, once their writers are done;
    /// `None` when a writer outlasted the lock wait timeout.
    async fn probe(&mut self, from: i64, until: i64) -> Result<Option<Vec<Vec<Value>>>, Error> {
        // A connection kept idle may have been closed by the server since
        // (`wait_timeout`): one failure on it earns a second try on a new one.
        if let Some(conn) = self.prober.take() {
            match self.probe_on(conn, from, until).await {
                Ok(rows) => return Ok(rows),
                Err(error) => tracing::debug!(%error, "probe failed on a kept connection; trying a new one"),
            }
        }
        let conn = self.open_prober().await?;
        self.probe_on(conn, from, until).await
    }

    async fn probe_on(&mut self, mut conn: Conn<B>, from: i64, until: i64) -> Result<Option<Vec<Vec<Value>>>, Error> {
        let (from, until) = (Value::I64(from), Value::I64(until));
        let binds = [(&from, LogicalType::I64), (&until, LogicalType::I64)];
        let mut tx = sqlx::Connection::begin(&mut conn).await.map_err(|e| self.fail(e))?;
        let rows = match B::fetch_all(&mut tx, &self.sql.probe, &binds, &self.sql.types).await {
            Ok(rows) => Some(rows),
            // A writer slower than the lock wait timeout: look again later.
            Err(e) if B::classify(&e) == Failure::LockTimeout => None,
            Err(e) => return Err(self.fail(e)),
        };
        tx.commit().await.map_err(|e| self.fail(e))?;
        // Kept only when all went well: a failed connection is replaced.
        self.prober = Some(conn);
        Ok(rows)
    }

    /// A connection of the reader's own for probes, out of the pool: its
    /// session settings stay with it, and if the reader is dropped during a
    /// probe, the connection closes rather than going back to the pool with
    /// its transaction open.
    async fn open_prober(&mut self) -> Result<Conn<B>, Error> {
        let mut conn = self.store.pool().acquire().await?.detach();
        // READ COMMITTED: a locking read of a missing id takes no gap lock,
        // so it never blocks writers appending events.
        B::execute(&mut conn, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(|e| self.fail(e))?;
        // Wait on a writer a second at a time: a timed-out probe is simply
        // retried, and a short wait lets the stream notice shutdown.
        B::execute(&mut conn, "SET SESSION innodb_lock_wait_timeout = 1").await.map_err(|e| self.fail(e))?;
        Ok(conn)
    }

    /// Ids below this one were handed out at least the grace period ago.
    fn passed_before(&self) -> i64 {
        let now = Instant::now();
        self.seen
            .iter()
            .take_while(|(_, at)| now.duration_since(*at) >= self.options.gap_grace)
            .last()
            .map_or(i64::MIN, |(max, _)| *max)
    }

    /// Forgets seen ids at or below the cursor, except the last entry.
    fn prune_seen(&mut self) {
        let cursor = self.cursor.id();
        while self.seen.len() > 1 && self.seen.get(1).is_some_and(|(max, _)| *max <= cursor) {
            self.seen.pop_front();
        }
    }

    fn held_back(&mut self, out: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
        self.retry_soon = true;
        self.prune_seen();
        out
    }

    fn stall(&mut self) {
        self.retry_soon = true;
        self.stalled.get_or_insert_with(Instant::now);
    }

    fn envelope(&self, mut values: Vec<Value>) -> Result<Envelope<M>, Error> {
        let tx = match B::GAP_SAFETY {
            GapSafety::XidFence => match values.pop() {
                Some(Value::I64(tx)) => tx,
                _ => 0,
            },
            GapSafety::SingleWriter | GapSafety::LockProbe => 0,
        };
        let StoredEvent { position, record_id, event, from, to, version, metadata, created_at } =
            self.store.event(values)?;
        Ok(Envelope {
            position: Position::new(tx, position),
            record_id,
            event,
            from,
            to,
            version,
            created_at,
            metadata,
        })
    }

    fn fail(&self, error: sqlx::Error) -> Error {
        self.store.failure(error, None)
    }
}

/// The rows of the batch after `after`, unread.
async fn read_batch<B: Backend>(
    conn: &mut Conn<B>,
    sql: &StreamSql,
    after: Position,
    batch: u32,
) -> Result<Vec<DbRow<B>>, sqlx::Error> {
    let limit = Value::I64(i64::from(batch));
    let (tx, id) = (Value::I64(after.tx()), Value::I64(after.id()));
    let mut binds = position_binds::<B>(&tx, &id);
    binds.push((&limit, LogicalType::I64));
    B::fetch_rows(conn, &sql.read, &binds).await
}

/// The position of a raw events row: its id first, and on PostgreSQL its
/// transaction last.
fn raw_position<B: Backend>(row: &[Value]) -> Position {
    let tx = match (B::GAP_SAFETY, row.last()) {
        (GapSafety::XidFence, Some(Value::I64(tx))) => *tx,
        _ => 0,
    };
    Position::new(tx, row_id(row))
}

/// The binds naming a position: `tx, id` on PostgreSQL, `id` elsewhere.
fn position_binds<'a, B: Backend>(tx: &'a Value, id: &'a Value) -> Vec<Bind<'a>> {
    match B::GAP_SAFETY {
        GapSafety::XidFence => vec![(tx, LogicalType::I64), (id, LogicalType::I64)],
        GapSafety::SingleWriter | GapSafety::LockProbe => vec![(id, LogicalType::I64)],
    }
}

fn row_id(row: &[Value]) -> i64 {
    match row.first() {
        Some(Value::I64(id)) => *id,
        _ => i64::MAX,
    }
}

/// The same decode error again (the reader reports it on every call).
fn clone_decode(error: &Error) -> Error {
    match error {
        Error::Decode { machine, position, id, message } => {
            Error::Decode { machine, position: *position, id: id.clone(), message: message.clone() }
        }
        Error::CorruptRow { machine, id, message } => {
            Error::CorruptRow { machine, id: id.clone(), message: message.clone() }
        }
        other => Error::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

/// Why a waiting reader looks again.
struct Wake {
    commits: Option<watch::Receiver<u64>>,
    remote: Option<WakeUps>,
}

impl Wake {
    async fn new<M: Machine, B: Backend>(store: &Store<M, B>, options: &StreamOptions) -> Result<Self, Error> {
        let remote = if options.listen {
            B::listen(store.pool(), store.channel()).await.map_err(|e| store.failure(e, None))?
        } else {
            None
        };
        Ok(Self { commits: Some(store.commits()), remote })
    }

    /// Commits before this call need no wake-up: the read after it sees them.
    fn mark_seen(&mut self) {
        if let Some(commits) = &mut self.commits {
            commits.borrow_and_update();
        }
    }

    async fn wait(&mut self, pause: Duration) {
        let Self { commits, remote } = self;
        let local = async {
            match commits {
                Some(receiver) => {
                    // The store is gone: only polling is left.
                    if receiver.changed().await.is_err() {
                        *commits = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        let remote = async {
            match remote {
                Some(wake_ups) => {
                    if wake_ups.next().await.is_none() {
                        *remote = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = local => {}
            () = remote => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
