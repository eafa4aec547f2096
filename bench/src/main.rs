//! statefold's benchmarks, one per `--bench`:
//!
//! - `transitions` (the default): commands per second through statefold vs
//!   hand-written sqlx running the identical statements in the identical
//!   transactions, for the workload place -> pay -> ship, with 1 and 8 clients;
//! - `catchup`: a stream reading `--events` events from position 0 vs a raw
//!   `SELECT .. WHERE id > $1 ORDER BY id LIMIT n` loop, and the peak memory of each;
//! - `latency`: commit-to-consumer latency, with and without notifications.
//!
//! ```text
//! cargo run --release -p statefold-bench -- [--bench transitions|catchup|latency] [--backend sqlite|postgres|all]
//!     [--ops N] [--rounds N] [--events N] [--batch N] [--samples N] [--postgres-url URL]
//! ```
//!
//! SQLite runs on a temporary file in WAL mode. PostgreSQL runs in a fresh
//! database created on the server of `--postgres-url` (default:
//! `STATEFOLD_TEST_POSTGRES_URL`) and dropped afterwards. Each figure is the
//! median of the rounds; both sides use the same pool settings.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::types::Json;
use sqlx::{Executor, PgPool, SqlitePool};
use statefold::{Backend, Machine, Postgres, Sqlite, Store};
use std::future::Future;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

mod catchup;
mod latency;

/// An order's life, as in the README.
#[derive(Debug, Clone, PartialEq, Machine)]
#[machine(table = "orders")]
enum Order {
    /// The customer placed the order.
    #[initial]
    Placed {
        /// Who ordered.
        customer: String,
        /// The total, in cents.
        amount_cents: i64,
    },
    /// The payment went through.
    #[from(Placed)]
    Paid {
        /// The payment provider's reference.
        payment_ref: String,
    },
    /// The parcel left.
    #[from(Paid)]
    Shipped {
        /// The carrier's tracking number.
        tracking: String,
    },
    /// Called off before shipping.
    #[from(Placed, Paid)]
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The parcel arrived.
    #[from(Shipped)]
    Delivered,
}

/// Commands per order: place, pay, ship.
const COMMANDS_PER_ORDER: usize = 3;

/// Which benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bench {
    Transitions,
    Catchup,
    Latency,
}

struct Options {
    bench: Bench,
    events: usize,
    batch: u32,
    samples: usize,
    sqlite: bool,
    postgres: bool,
    ops: usize,
    rounds: usize,
    postgres_url: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        bench: Bench::Transitions,
        events: 1_000_000,
        batch: 1_000,
        samples: 500,
        sqlite: true,
        postgres: true,
        ops: 6_000,
        rounds: 5,
        postgres_url: std::env::var("STATEFOLD_TEST_POSTGRES_URL").ok(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => match value()?.as_str() {
                "sqlite" => (options.sqlite, options.postgres) = (true, false),
                "postgres" => (options.sqlite, options.postgres) = (false, true),
                "all" => (options.sqlite, options.postgres) = (true, true),
                other => return Err(format!("unknown backend `{other}`: use sqlite, postgres or all")),
            },
            "--bench" => {
                options.bench = match value()?.as_str() {
                    "transitions" => Bench::Transitions,
                    "catchup" => Bench::Catchup,
                    "latency" => Bench::Latency,
                    other => return Err(format!("unknown bench `{other}`: use transitions, catchup or latency")),
                }
            }
            "--events" => options.events = value()?.parse().map_err(|e| format!("--events: {e}"))?,
            "--batch" => options.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--samples" => options.samples = value()?.parse().map_err(|e| format!("--samples: {e}"))?,
            "--ops" => options.ops = value()?.parse().map_err(|e| format!("--ops: {e}"))?,
            "--rounds" => options.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--postgres-url" => options.postgres_url = Some(value()?),
            "--help" | "-h" => {
                return Err("usage: statefold-bench [--bench transitions|catchup|latency] \
                            [--backend sqlite|postgres|all] [--ops N] [--rounds N] [--events N] [--batch N] \
                            [--samples N] [--postgres-url URL]"
                    .into())
            }
            other => return Err(format!("unknown argument `{other}`; see --help")),
        }
    }
    if options.ops < COMMANDS_PER_ORDER * 8 || options.rounds == 0 {
        return Err("--ops must be at least 24 and --rounds at least 1".into());
    }
    if options.events == 0 || options.batch == 0 || options.samples < 2 {
        return Err("--events and --batch must be at least 1, --samples at least 2".into());
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let result = async {
        let url = || {
            options.postgres_url.as_deref().ok_or(
                "PostgreSQL needs a server: pass --postgres-url or set STATEFOLD_TEST_POSTGRES_URL (or use --backend sqlite)",
            )
        };
        match options.bench {
            Bench::Transitions => {
                println!(
                    "place -> pay -> ship, {} commands per run, median of {} rounds (commands per second)\n",
                    options.ops, options.rounds
                );
                println!(
                    "{:<12} {:>7} {:>12} {:>18} {:>7}",
                    "backend", "clients", "statefold", "hand-written sqlx", "ratio"
                );
                if options.sqlite {
                    bench_sqlite(&options).await?;
                }
                if options.postgres {
                    bench_postgres(&options, url()?).await?;
                }
            }
            Bench::Catchup => catchup::run(&options, options.postgres.then(url).transpose()?).await?,
            Bench::Latency => latency::run(&options, options.postgres.then(url).transpose()?).await?,
        }
        Ok::<_, BoxError>(())
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs `orders` orders split over `clients` concurrent clients; returns the elapsed time.
async fn drive<F, Fut>(clients: usize, orders: usize, order: F) -> Result<Duration, BoxError>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let order = order.clone();
            tokio::spawn(async move {
                for n in (client..orders).step_by(clients) {
                    order(n).await?;
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}

/// One order through statefold.
async fn statefold_order<B: Backend>(store: Store<Order, B>, n: usize) -> Result<(), BoxError> {
    let placed = store.insert(OrderPlaced { customer: format!("customer {n}"), amount_cents: 4200 }).await?;
    let paid = store.apply(placed.transition(OrderPaid { payment_ref: format!("pay_{n}") })).await?;
    store.apply(paid.transition(OrderShipped { tracking: format!("trk_{n}") })).await?;
    Ok(())
}

/// A time at the precision statefold stores.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The row a transition returns, then the event's position.
type PgRow =
    (i64, String, i64, DateTime<Utc>, DateTime<Utc>, String, i64, Option<String>, Option<String>, Option<String>, i64);

// The statements statefold renders for `Order` on PostgreSQL, copied verbatim.
const PG_PLACE: &str = r#"WITH "rec" AS (INSERT INTO "orders" ("status", "version", "created_at", "updated_at", "customer", "amount_cents") VALUES ($1, 1, $2, $3, $4, $5) RETURNING "id", "version") INSERT INTO "order_events" ("record_id", "kind", "from_status", "to_status", "version", "payload", "metadata", "created_at") SELECT "id", $6, $7, $8, "version", $9, $10, $11 FROM "rec" RETURNING "record_id", "id""#;
const PG_PAY: &str = r#"WITH "upd" AS (UPDATE "orders" SET "status" = $1, "version" = "version" + 1, "updated_at" = $2, "payment_ref" = $3 WHERE "id" = $4 AND "status" = $5 AND "version" = $6 RETURNING "id", "status", "version", "created_at", "updated_at", "customer", "amount_cents", "payment_ref", "tracking", "reason"), "ev" AS (INSERT INTO "order_events" ("record_id", "kind", "from_status", "to_status", "version", "payload", "metadata", "created_at") SELECT "id", $7, $8, $9, "version", $10, $11, $12 FROM "upd" RETURNING "id") SELECT "upd".*, "ev"."id" FROM "upd", "ev""#;
const PG_SHIP: &str = r#"WITH "upd" AS (UPDATE "orders" SET "status" = $1, "version" = "version" + 1, "updated_at" = $2, "tracking" = $3 WHERE "id" = $4 AND "status" = $5 AND "version" = $6 RETURNING "id", "status", "version", "created_at", "updated_at", "customer", "amount_cents", "payment_ref", "tracking", "reason"), "ev" AS (INSERT INTO "order_events" ("record_id", "kind", "from_status", "to_status", "version", "payload", "metadata", "created_at") SELECT "id", $7, $8, $9, "version", $10, $11, $12 FROM "upd" RETURNING "id") SELECT "upd".*, "ev"."id" FROM "upd", "ev""#;

/// One order through hand-written sqlx on PostgreSQL: one statement per command.
async fn sqlx_order_pg(pool: PgPool, n: usize) -> Result<(), BoxError> {
    let meta = json!({});
    let (customer, at) = (format!("customer {n}"), now());
    let payload = json!({ "customer": customer, "amount_cents": 4200 });
    let (id, _position): (i64, i64) = sqlx::query_as(PG_PLACE)
        .bind("placed")
        .bind(at)
        .bind(at)
        .bind(&customer)
        .bind(4200_i64)
        .bind("placed")
        .bind(None::<&str>)
        .bind("placed")
        .bind(Json(&payload))
        .bind(Json(&meta))
        .bind(at)
        .fetch_one(&pool)
        .await?;
    let steps = [
        (PG_PAY, "placed", "paid", format!("pay_{n}"), "payment_ref"),
        (PG_SHIP, "paid", "shipped", format!("trk_{n}"), "tracking"),
    ];
    for (version, (sql, from, to, value, field)) in (1_i64..).zip(steps) {
        let at = now();
        let payload = json!({ field: value });
        let row: Option<PgRow> = sqlx::query_as(sql)
            .bind(to)
            .bind(at)
            .bind(&value)
            .bind(id)
            .bind(from)
            .bind(version)
            .bind(to)
            .bind(from)
            .bind(to)
            .bind(Json(&payload))
            .bind(Json(&meta))
            .bind(at)
            .fetch_optional(&pool)
            .await?;
        row.ok_or("conflict")?;
    }
    Ok(())
}

// The statements statefold renders for `Order` on SQLite, copied verbatim.
const SQLITE_PLACE: &str = r#"INSERT INTO "orders" ("status", "version", "created_at", "updated_at", "customer", "amount_cents") VALUES (?, 1, ?, ?, ?, ?) RETURNING "id""#;
const SQLITE_EVENT: &str = r#"INSERT INTO "order_events" ("record_id", "kind", "from_status", "to_status", "version", "payload", "metadata", "created_at") VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING "id""#;
const SQLITE_PAY: &str = r#"UPDATE "orders" SET "status" = ?, "version" = "version" + 1, "updated_at" = ?, "payment_ref" = ? WHERE "id" = ? AND "status" = ? AND "version" = ? RETURNING "id", "status", "version", "created_at", "updated_at", "customer", "amount_cents", "payment_ref", "tracking", "reason""#;
const SQLITE_SHIP: &str = r#"UPDATE "orders" SET "status" = ?, "version" = "version" + 1, "updated_at" = ?, "tracking" = ? WHERE "id" = ? AND "status" = ? AND "version" = ? RETURNING "id", "status", "version", "created_at", "updated_at", "customer", "amount_cents", "payment_ref", "tracking", "reason""#;

/// A transition's row on SQLite, where times are text.
type SqliteRow = (i64, String, i64, String, String, String, i64, Option<String>, Option<String>, Option<String>);

/// A time as statefold stores it in SQLite.
fn sqlite_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// One order through hand-written sqlx on SQLite: a transaction of two statements per command.
async fn sqlx_order_sqlite(pool: SqlitePool, n: usize) -> Result<(), BoxError> {
    let meta = json!({});
    let (customer, at) = (format!("customer {n}"), sqlite_time(now()));
    let payload = json!({ "customer": customer, "amount_cents": 4200 });
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let (id,): (i64,) = sqlx::query_as(SQLITE_PLACE)
        .bind("placed")
        .bind(&at)
        .bind(&at)
        .bind(&customer)
        .bind(4200_i64)
        .fetch_one(&mut *tx)
        .await?;
    let event = sqlx::query_as::<_, (i64,)>(SQLITE_EVENT).bind(id).bind("placed").bind(None::<&str>).bind("placed");
    event.bind(1_i64).bind(Json(&payload)).bind(Json(&meta)).bind(&at).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    let steps = [
        (SQLITE_PAY, "placed", "paid", format!("pay_{n}"), "payment_ref"),
        (SQLITE_SHIP, "paid", "shipped", format!("trk_{n}"), "tracking"),
    ];
    for (version, (sql, from, to, value, field)) in (1_i64..).zip(steps) {
        let at = sqlite_time(now());
        let payload = json!({ field: value });
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<SqliteRow> = sqlx::query_as(sql)
            .bind(to)
            .bind(&at)
            .bind(&value)
            .bind(id)
            .bind(from)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
        let (id, _, version, ..) = row.ok_or("conflict")?;
        let event = sqlx::query_as::<_, (i64,)>(SQLITE_EVENT).bind(id).bind(to).bind(from).bind(to).bind(version);
        event.bind(Json(&payload)).bind(Json(&meta)).bind(&at).fetch_one(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(backend: &str, clients: usize, statefold: f64, sqlx: f64) {
    println!("{backend:<12} {clients:>7} {statefold:>12.0} {sqlx:>18.0} {:>7.2}", statefold / sqlx);
}

/// Commands per second of one timed run.
fn rate(options: &Options, elapsed: Duration) -> f64 {
    (options.ops / COMMANDS_PER_ORDER * COMMANDS_PER_ORDER) as f64 / elapsed.as_secs_f64()
}

async fn bench_sqlite(options: &Options) -> Result<(), BoxError> {
    let orders = options.ops / COMMANDS_PER_ORDER;
    for clients in [1, 8] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..options.rounds {
            // A fresh file per run, so both sides write into tables of the same size.
            // Alternate which side goes first, so neither always meets a warmer disk cache.
            for side in if round % 2 == 0 { [true, false] } else { [false, true] } {
                let path = std::env::temp_dir()
                    .join(format!("statefold-bench-{}-{clients}-{round}-{side}.db", std::process::id()));
                let pool = Sqlite::connect(&format!("sqlite://{}", path.display())).await?;
                let store = Store::<Order, Sqlite>::new(pool.clone());
                store.create_tables().await?;
                let elapsed = if side {
                    drive(clients, clients * 4, {
                        let s = store.clone();
                        move |n| statefold_order(s.clone(), n)
                    })
                    .await?;
                    drive(clients, orders, move |n| statefold_order(store.clone(), n)).await?
                } else {
                    drive(clients, clients * 4, {
                        let p = pool.clone();
                        move |n| sqlx_order_sqlite(p.clone(), n)
                    })
                    .await?;
                    drive(clients, orders, {
                        let p = pool.clone();
                        move |n| sqlx_order_sqlite(p.clone(), n)
                    })
                    .await?
                };
                if side { &mut ours } else { &mut theirs }.push(rate(options, elapsed));
                pool.close().await;
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    // A missing -wal or -shm file is fine.
                    let _ = std::fs::remove_file(file);
                }
            }
        }
        report("SQLite", clients, median(ours), median(theirs));
    }
    Ok(())
}

async fn bench_postgres(options: &Options, url: &str) -> Result<(), BoxError> {
    let admin = PgConnectOptions::from_str(url)?;
    let name = format!("sf_bench_{}", std::process::id());
    let admin_pool = PgPool::connect_with(admin.clone()).await?;
    admin_pool.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await?;
    let result = async {
        let pool = Postgres::pool_options().connect_with(admin.clone().database(&name)).await?;
        let store = Store::<Order, Postgres>::new(pool.clone());
        store.create_tables().await?;
        let orders = options.ops / COMMANDS_PER_ORDER;
        for clients in [1, 8] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for round in 0..options.rounds {
                for side in if round % 2 == 0 { [true, false] } else { [false, true] } {
                    pool.execute(r#"TRUNCATE "orders", "order_events" RESTART IDENTITY"#).await?;
                    let elapsed = if side {
                        drive(clients, clients * 4, {
                            let s = store.clone();
                            move |n| statefold_order(s.clone(), n)
                        })
                        .await?;
                        drive(clients, orders, {
                            let s = store.clone();
                            move |n| statefold_order(s.clone(), n)
                        })
                        .await?
                    } else {
                        drive(clients, clients * 4, {
                            let p = pool.clone();
                            move |n| sqlx_order_pg(p.clone(), n)
                        })
                        .await?;
                        drive(clients, orders, {
                            let p = pool.clone();
                            move |n| sqlx_order_pg(p.clone(), n)
                        })
                        .await?
                    };
                    if side { &mut ours } else { &mut theirs }.push(rate(options, elapsed));
                }
            }
            report("PostgreSQL", clients, median(ours), median(theirs));
        }
        pool.close().await;
        Ok::<_, BoxError>(())
    }
    .await;
    admin_pool.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await?;
    result
}
