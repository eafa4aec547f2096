//! Catch-up: a statefold stream reading the whole log from position 0,
//! decoding each event into `Order`, against a raw keyset loop over the same
//! columns that decodes each payload into a `serde_json::Value`. Each run is
//! a process of its own, so each side's peak memory is its own.
//!
//! The log is seeded in the database itself, in the events table's shape
//! (`generate_series` on PostgreSQL, a recursive CTE on SQLite, a cross join
//! of digits on MySQL).

use crate::child::{self, Run};
use crate::scratch::Scratch;
use crate::transitions::{columns, report};
use crate::{grpc, median, BoxError, Db, Options, Order, Side, RUN_LIMIT};
use chrono::{DateTime, NaiveDateTime, Utc};
use futures::StreamExt;
use sqlx::types::Json;
use sqlx::{Executor, MySqlPool, PgPool, Row, SqlitePool};
use statefold::{Backend, MySql, Postgres, Sqlite, Start, Store, StreamOptions};
use std::future::Future;
use std::time::Instant;

/// Reads every event through a statefold stream.
async fn through_stream<B: Backend>(url: &str, events: usize, batch: u32) -> Result<usize, BoxError> {
    let store = Store::<Order, B>::connect(url).await?;
    let mut stream = store.stream_with(Start::Beginning, StreamOptions::default().batch_size(batch)).take(events);
    let mut read = 0;
    while let Some(envelope) = stream.next().await {
        envelope?;
        read += 1;
    }
    Ok(read)
}

type PgEvent =
    (i64, i64, String, Option<String>, String, i64, Json<serde_json::Value>, Json<serde_json::Value>, DateTime<Utc>);

const RAW_PG: &str = "SELECT id, record_id, kind, from_status, to_status, version, payload, metadata, created_at \
                      FROM order_events WHERE id > $1 ORDER BY id LIMIT $2";

/// Reads every event with a raw keyset loop on PostgreSQL.
async fn raw_pg(url: &str, events: usize, batch: u32) -> Result<usize, BoxError> {
    let pool = Postgres::connect(url).await?;
    let (mut after, mut read) = (0_i64, 0);
    while read < events {
        let rows: Vec<PgEvent> = sqlx::query_as(RAW_PG).bind(after).bind(i64::from(batch)).fetch_all(&pool).await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        read += rows.len();
    }
    Ok(read)
}

/// The stream's gap-safe query, by hand: what the fence costs the database.
const FENCED_PG: &str =
    "SELECT id, record_id, kind, from_status, to_status, version, payload, metadata, created_at, tx \
     FROM order_events \
     WHERE (tx, id) > (CAST(CAST($1 AS TEXT) AS xid8), $2) \
     AND tx < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx, id LIMIT $3";

/// Reads every event with the gap-safe query in a raw loop on PostgreSQL.
async fn fenced_pg(url: &str, events: usize, batch: u32) -> Result<usize, BoxError> {
    let pool = Postgres::connect(url).await?;
    let (mut after, mut read) = ((0_i64, 0_i64), 0);
    while read < events {
        let rows: Vec<sqlx::postgres::PgRow> =
            sqlx::query(FENCED_PG).bind(after.0).bind(after.1).bind(i64::from(batch)).fetch_all(&pool).await?;
        for row in &rows {
            let event: PgEvent = sqlx::FromRow::from_row(row)?;
            // `xid8`, unknown to sqlx: eight bytes, big-endian.
            let tx: [u8; 8] = row.try_get_raw(9)?.as_bytes()?.try_into()?;
            after = (i64::from_be_bytes(tx), event.0);
        }
        if rows.is_empty() {
            break;
        }
        read += rows.len();
    }
    Ok(read)
}

const RAW_SQLITE: &str = "SELECT id, record_id, kind, from_status, to_status, version, payload, metadata, created_at \
                          FROM order_events WHERE id > ? ORDER BY id LIMIT ?";

type SqliteEvent =
    (i64, i64, String, Option<String>, String, i64, Json<serde_json::Value>, Json<serde_json::Value>, String);

/// Reads every event with a raw keyset loop on SQLite.
async fn raw_sqlite(url: &str, events: usize, batch: u32) -> Result<usize, BoxError> {
    let pool = Sqlite::connect(url).await?;
    let (mut after, mut read) = (0_i64, 0);
    while read < events {
        let rows: Vec<SqliteEvent> =
            sqlx::query_as(RAW_SQLITE).bind(after).bind(i64::from(batch)).fetch_all(&pool).await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        read += rows.len();
    }
    Ok(read)
}

const RAW_MYSQL: &str = "SELECT id, record_id, kind, from_status, to_status, version, payload, metadata, created_at \
                         FROM order_events WHERE id > ? ORDER BY id LIMIT ?";

type MySqlEvent = (i64, i64, String, Option<String>, String, i64, serde_json::Value, serde_json::Value, NaiveDateTime);

/// One event row on MySQL. Text is read unchecked: with the binary collation
/// statefold's tables use, MySQL flags text columns BINARY, which sqlx's type
/// check takes for bytes; JSON arrives as text.
fn mysql_event(row: &sqlx::mysql::MySqlRow) -> Result<MySqlEvent, BoxError> {
    let text = |i: usize| row.try_get_unchecked::<String, _>(i);
    Ok((
        row.try_get(0)?,
        row.try_get(1)?,
        text(2)?,
        row.try_get_unchecked(3)?,
        text(4)?,
        row.try_get(5)?,
        serde_json::from_str(&text(6)?)?,
        serde_json::from_str(&text(7)?)?,
        row.try_get(8)?,
    ))
}

/// Reads every event with a raw keyset loop on MySQL.
async fn raw_mysql(url: &str, events: usize, batch: u32) -> Result<usize, BoxError> {
    let pool = MySql::connect(url).await?;
    let (mut after, mut read) = (0_i64, 0);
    while read < events {
        let rows = sqlx::query(RAW_MYSQL).bind(after).bind(i64::from(batch)).fetch_all(&pool).await?;
        let mut last = None;
        for row in &rows {
            last = Some(mysql_event(row)?.0);
        }
        let Some(last) = last else { break };
        after = last;
        read += rows.len();
    }
    Ok(read)
}

/// Events per second of one read of the whole log, bounded in time.
async fn timed(events: usize, read: impl Future<Output = Result<usize, BoxError>>) -> Result<f64, BoxError> {
    let start = Instant::now();
    let read = tokio::time::timeout(RUN_LIMIT, read)
        .await
        .map_err(|_| format!("reading {events} events took more than {RUN_LIMIT:?}"))??;
    let elapsed = start.elapsed();
    if read != events {
        return Err(format!("read {read} events, expected {events}").into());
    }
    Ok(events as f64 / elapsed.as_secs_f64())
}

/// Child mode: one side, once.
pub(crate) async fn side(db: Db, side: Side, url: &str, events: usize, batch: u32) -> Result<f64, BoxError> {
    match (db, side) {
        (Db::Sqlite, Side::Statefold) => timed(events, through_stream::<Sqlite>(url, events, batch)).await,
        (Db::Postgres, Side::Statefold) => timed(events, through_stream::<Postgres>(url, events, batch)).await,
        (Db::MySql, Side::Statefold) => timed(events, through_stream::<MySql>(url, events, batch)).await,
        (Db::Sqlite, Side::Hand) => timed(events, raw_sqlite(url, events, batch)).await,
        (Db::Postgres, Side::Hand) => timed(events, raw_pg(url, events, batch)).await,
        (Db::MySql, Side::Hand) => timed(events, raw_mysql(url, events, batch)).await,
        (Db::Postgres, Side::Fenced) => timed(events, fenced_pg(url, events, batch)).await,
        (Db::Sqlite, Side::Grpc) => timed(events, grpc::through_grpc::<Sqlite>(url, events, batch)).await,
        (Db::Postgres, Side::Grpc) => timed(events, grpc::through_grpc::<Postgres>(url, events, batch)).await,
        (Db::MySql, Side::Grpc) => timed(events, grpc::through_grpc::<MySql>(url, events, batch)).await,
        (_, Side::Fenced) => Err("--side fenced is PostgreSQL's".into()),
        (_, other) => Err(format!("--side {} is not a catch-up side", other.flag()).into()),
    }
}

/// Writes `events` events into the log, in ten transactions (so that on
/// PostgreSQL positions span several transaction ids).
pub(crate) async fn seed(db: Db, url: &str, events: usize) -> Result<(), BoxError> {
    let chunk = events.div_ceil(10);
    let chunks = (1..=events).step_by(chunk).map(|first| (first as i64, (first + chunk - 1).min(events) as i64));
    match db {
        Db::Postgres => {
            let pool = PgPool::connect(url).await?;
            for (first, last) in chunks {
                sqlx::query(
                    "INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
                     SELECT g, 'placed', NULL, 'placed', 1, \
                            jsonb_build_object('customer', 'customer ' || g, 'amount_cents', g), '{}'::jsonb, now() \
                     FROM generate_series($1::bigint, $2::bigint) AS g",
                )
                .bind(first)
                .bind(last)
                .execute(&pool)
                .await?;
            }
            pool.execute("VACUUM ANALYZE order_events").await?;
            pool.close().await;
        }
        Db::Sqlite => {
            let pool = SqlitePool::connect(url).await?;
            for (first, last) in chunks {
                sqlx::query(
                    "WITH RECURSIVE g(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM g WHERE n < ?) \
                     INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
                     SELECT n, 'placed', NULL, 'placed', 1, json_object('customer', 'customer ' || n, 'amount_cents', n), \
                            '{}', '2026-01-01T00:00:00.000000Z' FROM g",
                )
                .bind(first)
                .bind(last)
                .execute(&pool)
                .await?;
            }
            pool.close().await;
        }
        Db::MySql => {
            // 0 .. 10^k - 1 from k copies of the digits: MySQL's recursive
            // CTEs stop at 1,000 levels unless a session variable says
            // otherwise, and that variable's name differs in MariaDB.
            let width = (chunk - 1).max(1).ilog10() as usize + 1;
            let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                          UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
            let from: Vec<String> = (0..width).map(|i| format!("{digits} AS d{i}")).collect();
            let sum: Vec<String> = (0..width).map(|i| format!("d{i}.d * {}", 10_i64.pow(i as u32))).collect();
            let sql = format!(
                "INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
                 SELECT n, 'placed', NULL, 'placed', 1, JSON_OBJECT('customer', CONCAT('customer ', n), 'amount_cents', n), \
                        '{{}}', UTC_TIMESTAMP(6) \
                 FROM (SELECT ? + {} AS n FROM {}) AS g WHERE n <= ? ORDER BY n",
                sum.join(" + "),
                from.join(", ")
            );
            let pool = MySqlPool::connect(url).await?;
            for (first, last) in chunks {
                sqlx::query(&sql).bind(first).bind(last).execute(&pool).await?;
            }
            pool.execute("ANALYZE TABLE order_events").await?;
            pool.close().await;
        }
    }
    Ok(())
}

fn command(db: Db, options: &Options) -> String {
    format!(
        "cargo run --release -p statefold-bench -- --bench catchup --backend {} --events {} --batch {} --rounds {}",
        db.flag(),
        options.events,
        options.batch,
        options.rounds
    )
}

pub(crate) async fn run(options: &Options) -> Result<(), BoxError> {
    println!(
        "catch-up from position 0 over {} events, batches of {}, median of {} rounds, each run in its own process\n",
        options.events, options.batch, options.rounds
    );
    println!("{:<12} {}", "backend", columns());
    let mut commands = Vec::new();
    for &db in &options.backends {
        let scratch = Scratch::create(db, options.server(db)?, "catchup").await?;
        let result = async {
            seed(db, &scratch.url, options.events).await?;
            let rest = ["--events".to_owned(), options.events.to_string(), "--batch".into(), options.batch.to_string()];
            let args = |side| child::args("catchup", db, side, &scratch.url, &rest);
            // One untimed read first, so that no timed run meets a cold cache.
            child::spawn(&args(Side::Hand)).await?;
            let (mut ours, mut theirs, mut fenced): (Vec<Run>, Vec<Run>, Vec<f64>) = Default::default();
            for round in 0..options.rounds {
                let sides = if round % 2 == 0 { [Side::Statefold, Side::Hand] } else { [Side::Hand, Side::Statefold] };
                for side in sides {
                    let run = child::spawn(&args(side)).await?;
                    if side == Side::Statefold { &mut ours } else { &mut theirs }.push(run);
                }
                if db == Db::Postgres {
                    fenced.push(child::spawn(&args(Side::Fenced)).await?.rate);
                }
            }
            report(db.label(), &ours, &theirs, 12);
            if !fenced.is_empty() {
                println!("{:<12} {:>10.0}  (the raw loop with the stream's gap-safe query)", "", median(fenced));
            }
            commands.push(command(db, options));
            Ok::<_, BoxError>(())
        }
        .await;
        scratch.remove().await?;
        result?;
    }
    println!(
        "\nevents/s; statefold = its stream, hand = the raw loop; ratio = stream / raw loop, of the medians; \
         paired and range: of each round's ratio; other = raw loop; MiB: each child's peak RSS (VmHWM)"
    );
    println!("each row, with the server URLs in STATEFOLD_TEST_POSTGRES_URL / STATEFOLD_TEST_MYSQL_URL:");
    for command in commands {
        println!("  {command}");
    }
    println!();
    Ok(())
}
