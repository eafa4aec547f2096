//! Catch-up: a stream reading the whole log from position 0, against a raw
//! keyset loop over the same columns, with the peak memory of each.
//!
//! The log is seeded in the database itself (`generate_series` on
//! PostgreSQL, a recursive CTE on SQLite), in the events table's shape.
//! Peak memory is the process's peak resident set (`VmHWM`), reset before
//! each run through `/proc/self/clear_refs`.

use crate::{median, BoxError, Options, Order};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::postgres::PgConnectOptions;
use sqlx::types::Json;
use sqlx::{Executor, PgPool, SqlitePool};
use statefold::{Backend, Postgres, Sqlite, Start, Store, StreamOptions};
use std::str::FromStr;
use std::time::Instant;

/// A PostgreSQL database created for one benchmark and dropped after it.
pub(crate) struct Scratch {
    admin: PgPool,
    name: String,
    pub(crate) pool: PgPool,
}

impl Scratch {
    pub(crate) async fn create(url: &str, tag: &str) -> Result<Self, BoxError> {
        let admin_options = PgConnectOptions::from_str(url)?;
        let admin = PgPool::connect_with(admin_options.clone()).await?;
        let name = format!("sf_bench_{tag}_{}", std::process::id());
        admin.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await?;
        let pool = Postgres::pool_options().connect_with(admin_options.database(&name)).await?;
        Ok(Self { admin, name, pool })
    }

    /// Another pool on the same database (another "process").
    pub(crate) async fn another_pool(&self) -> Result<PgPool, BoxError> {
        let options = (*self.pool.connect_options()).clone();
        Ok(Postgres::pool_options().connect_with(options).await?)
    }

    pub(crate) async fn remove(self) -> Result<(), BoxError> {
        self.pool.close().await;
        self.admin.execute(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name).as_str()).await?;
        Ok(())
    }
}

/// The process's peak resident set since the last reset, in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

/// Resets the peak resident set to the present one (Linux 4.0 and later).
fn reset_peak() {
    // Elsewhere the peak is the process's whole life: still an upper bound.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One timed run: events per second and peak MiB.
struct Run {
    rate: f64,
    peak: f64,
}

async fn timed<F: std::future::Future<Output = Result<usize, BoxError>>>(
    events: usize,
    run: F,
) -> Result<Run, BoxError> {
    reset_peak();
    let start = Instant::now();
    let read = run.await?;
    let elapsed = start.elapsed();
    if read != events {
        return Err(format!("read {read} events, expected {events}").into());
    }
    Ok(Run { rate: events as f64 / elapsed.as_secs_f64(), peak: peak_mib() })
}

/// Reads every event through a statefold stream.
async fn through_stream<B: Backend>(store: &Store<Order, B>, events: usize, batch: u32) -> Result<usize, BoxError> {
    let mut stream = store.stream_with(Start::Beginning, StreamOptions::default().batch_size(batch)).take(events);
    let mut read = 0;
    while let Some(envelope) = stream.next().await {
        envelope?;
        read += 1;
    }
    Ok(read)
}

const RAW_PG: &str = "SELECT id, record_id, kind, from_status, to_status, version, payload, metadata, created_at \
                      FROM order_events WHERE id > $1 ORDER BY id LIMIT $2";

type PgEvent =
    (i64, i64, String, Option<String>, String, i64, Json<serde_json::Value>, Json<serde_json::Value>, DateTime<Utc>);

/// The stream's gap-safe query, by hand: what the fence costs the database.
const FENCED_PG: &str =
    "SELECT id, record_id, kind, from_status, to_status, version, payload, metadata, created_at, tx \
                         FROM order_events \
                         WHERE (tx, id) > (CAST(CAST($1 AS TEXT) AS xid8), $2) \
                         AND tx < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx, id LIMIT $3";

/// Reads every event with the gap-safe query in a raw loop on PostgreSQL.
async fn fenced_pg(pool: &PgPool, batch: u32) -> Result<usize, BoxError> {
    let (mut after, mut read) = ((0_i64, 0_i64), 0);
    loop {
        let rows: Vec<sqlx::postgres::PgRow> =
            sqlx::query(FENCED_PG).bind(after.0).bind(after.1).bind(i64::from(batch)).fetch_all(pool).await?;
        for row in &rows {
            use sqlx::Row;
            let event: PgEvent = sqlx::FromRow::from_row(row)?;
            // `xid8`, unknown to sqlx: eight bytes, big-endian.
            let tx: [u8; 8] = row.try_get_raw(9)?.as_bytes()?.try_into()?;
            after = (i64::from_be_bytes(tx), event.0);
        }
        if rows.is_empty() {
            return Ok(read);
        }
        read += rows.len();
    }
}

/// Reads every event with a raw keyset loop on PostgreSQL.
async fn raw_pg(pool: &PgPool, batch: u32) -> Result<usize, BoxError> {
    let (mut after, mut read) = (0_i64, 0);
    loop {
        let rows: Vec<PgEvent> = sqlx::query_as(RAW_PG).bind(after).bind(i64::from(batch)).fetch_all(pool).await?;
        let Some(last) = rows.last() else { return Ok(read) };
        after = last.0;
        read += rows.len();
    }
}

const RAW_SQLITE: &str = "SELECT id, record_id, kind, from_status, to_status, version, payload, metadata, created_at \
                          FROM order_events WHERE id > ? ORDER BY id LIMIT ?";

type SqliteEvent =
    (i64, i64, String, Option<String>, String, i64, Json<serde_json::Value>, Json<serde_json::Value>, String);

/// Reads every event with a raw keyset loop on SQLite.
async fn raw_sqlite(pool: &SqlitePool, batch: u32) -> Result<usize, BoxError> {
    let (mut after, mut read) = (0_i64, 0);
    loop {
        let rows: Vec<SqliteEvent> =
            sqlx::query_as(RAW_SQLITE).bind(after).bind(i64::from(batch)).fetch_all(pool).await?;
        let Some(last) = rows.last() else { return Ok(read) };
        after = last.0;
        read += rows.len();
    }
}

fn report(backend: &str, ours: Vec<Run>, theirs: Vec<Run>) {
    let peak = |runs: &[Run]| runs.iter().map(|r| r.peak).fold(0.0, f64::max);
    let (ours_peak, theirs_peak) = (peak(&ours), peak(&theirs));
    let ours = median(ours.iter().map(|r| r.rate).collect());
    let theirs = median(theirs.iter().map(|r| r.rate).collect());
    println!("{backend:<12} {ours:>14.0} {theirs:>14.0} {:>7.2} {ours_peak:>16.1} {theirs_peak:>14.1}", ours / theirs);
}

pub(crate) async fn run(options: &Options, postgres_url: Option<&str>) -> Result<(), BoxError> {
    println!(
        "catch-up from position 0 over {} events, batches of {}, median of {} rounds\n",
        options.events, options.batch, options.rounds
    );
    println!(
        "{:<12} {:>14} {:>14} {:>7} {:>16} {:>14}",
        "backend", "stream ev/s", "raw loop ev/s", "ratio", "stream peak MiB", "raw peak MiB"
    );
    if options.sqlite {
        sqlite(options).await?;
    }
    if let Some(url) = postgres_url {
        postgres(options, url).await?;
    }
    Ok(())
}

async fn postgres(options: &Options, url: &str) -> Result<(), BoxError> {
    let scratch = Scratch::create(url, "catchup").await?;
    let result = async {
        let store = Store::<Order, Postgres>::new(scratch.pool.clone());
        store.create_tables().await?;
        // Ten transactions, so that positions span several transaction ids.
        let chunk = options.events.div_ceil(10);
        for first in (1..=options.events).step_by(chunk) {
            let last = (first + chunk - 1).min(options.events);
            sqlx::query(
                "INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
                 SELECT g, 'placed', NULL, 'placed', 1, \
                        jsonb_build_object('customer', 'customer ' || g, 'amount_cents', g), '{}'::jsonb, now() \
                 FROM generate_series($1::bigint, $2::bigint) AS g",
            )
            .bind(first as i64)
            .bind(last as i64)
            .execute(&scratch.pool)
            .await?;
        }
        scratch.pool.execute("VACUUM ANALYZE order_events").await?;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..options.rounds {
            for side in if round % 2 == 0 { [true, false] } else { [false, true] } {
                if side {
                    ours.push(timed(options.events, through_stream(&store, options.events, options.batch)).await?);
                } else {
                    theirs.push(timed(options.events, raw_pg(&scratch.pool, options.batch)).await?);
                }
            }
        }
        report("PostgreSQL", ours, theirs);
        let mut fenced = Vec::new();
        for _ in 0..options.rounds {
            fenced.push(timed(options.events, fenced_pg(&scratch.pool, options.batch)).await?.rate);
        }
        let fenced = median(fenced);
        println!("{:<12} {:>14.0}  (the stream's gap-safe query in a raw loop)", "", fenced);
        Ok::<_, BoxError>(())
    }
    .await;
    scratch.remove().await?;
    result
}

async fn sqlite(options: &Options) -> Result<(), BoxError> {
    let path = std::env::temp_dir().join(format!("statefold-bench-catchup-{}.db", std::process::id()));
    let pool = Sqlite::connect(&format!("sqlite://{}", path.display())).await?;
    let result = async {
        let store = Store::<Order, Sqlite>::new(pool.clone());
        store.create_tables().await?;
        sqlx::query(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) \
             INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
             SELECT n, 'placed', NULL, 'placed', 1, json_object('customer', 'customer ' || n, 'amount_cents', n), \
                    '{}', '2026-01-01T00:00:00.000000Z' FROM g",
        )
        .bind(options.events as i64)
        .execute(&pool)
        .await?;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..options.rounds {
            for side in if round % 2 == 0 { [true, false] } else { [false, true] } {
                if side {
                    ours.push(timed(options.events, through_stream(&store, options.events, options.batch)).await?);
                } else {
                    theirs.push(timed(options.events, raw_sqlite(&pool, options.batch)).await?);
                }
            }
        }
        report("SQLite", ours, theirs);
        Ok::<_, BoxError>(())
    }
    .await;
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        // A missing -wal or -shm file is fine.
        let _ = std::fs::remove_file(file);
    }
    result
}
