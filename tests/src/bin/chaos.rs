//! The chaos suite: faults at every boundary, and processes killed with
//! SIGKILL at random moments, on each backend; then the books are checked.
//!
//! ```text
//! chaos [--backend sqlite|postgres|mysql|all] [--seed N] [--ops N] [--kills N]
//! ```
//!
//! Per backend, in a database of its own:
//!
//! 1. **Faults.** `Fate` at 20% on every fault point at once; writers drive
//!    two machines (orders by database id, tickets by UUID), some of them
//!    several records in one transaction, and retry every failed call as a
//!    user would, while a consumer projects every event into a table, also
//!    under faults.
//! 2. **SIGKILL.** A worker child (which writes, and after each committed
//!    write appends it to an acknowledgement file it fsyncs) and a projector
//!    child (a consumer with an SQL projection) are killed at random moments
//!    and restarted, `--kills` times.
//!
//! Afterwards, caught up: every acknowledged write is in the database
//! (`lost` counts those that are not, and events a projection missed), no
//! row version lacks its event or the reverse (the audit is clean), the
//! projection holds each event exactly once (`dup` counts the extra ones)
//! and equals its rebuild. One line per backend says so:
//!
//! ```text
//! chaos: backend=postgres seed=7 ops=5412 faults=2310 kills=20 lost=0 dup=0
//! ```
//!
//! The process exits non-zero when anything is lost, duplicated or unclean.
//! Seeds that ever failed are kept in [`REGRESSIONS`] and run every time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statefold::{
    Backend, Backoff, Consumer, Envelope, Error, Fate, Handler, HandlerError, Metadata, MySql, Postgres, Projection,
    Sqlite, Store, StreamOptions, Tx,
};
use statefold_tests::db::{Arg, TestBackend, TestDb};
use statefold_tests::machines::{Order, OrderPlaced, OrderState, Ticket, TicketOpen};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Seeds that once made the suite fail, run every time from then on.
const REGRESSIONS: &[u64] = &[];

/// The probability of a fault at each point reached.
const FAULTS: f64 = 0.2;

/// Writers at once in the faults phase.
const WRITERS: u64 = 4;

#[derive(Debug, Clone)]
struct Options {
    backend: String,
    seed: u64,
    ops: usize,
    kills: usize,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut options = Options { backend: "all".into(), seed: 7, ops: 5_000, kills: 20 };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => options.backend = value()?,
            "--seed" => options.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--ops" => options.ops = value()?.parse().map_err(|e| format!("--ops: {e}"))?,
            "--kills" => options.kills = value()?.parse().map_err(|e| format!("--kills: {e}"))?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => child(&args[1..], Role::Worker).await,
        Some("projector") => child(&args[1..], Role::Projector).await,
        _ => orchestrate(&args).await,
    }
}

async fn orchestrate(args: &[String]) -> ExitCode {
    let options = match options(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("chaos: {error}");
            return ExitCode::from(2);
        }
    };
    let backends: Vec<&str> = match options.backend.as_str() {
        "all" => vec!["sqlite", "postgres", "mysql"],
        one => vec![one],
    };
    let mut failed = false;
    for seed in std::iter::once(options.seed).chain(REGRESSIONS.iter().copied()) {
        for backend in &backends {
            let options = Options { seed, ..options.clone() };
            let outcome = match *backend {
                "sqlite" => run::<Sqlite>("sqlite", &options).await,
                "postgres" => run::<Postgres>("postgres", &options).await,
                "mysql" => run::<MySql>("mysql", &options).await,
                other => Err(format!("unknown backend `{other}`")),
            };
            match outcome {
                Ok(Some(tally)) => {
                    println!(
                        "chaos: backend={backend} seed={seed} ops={} faults={} kills={} lost={} dup={}",
                        tally.ops, tally.faults, tally.kills, tally.lost, tally.dup
                    );
                    if tally.lost > 0 || tally.dup > 0 || !tally.problems.is_empty() || tally.kills < options.kills {
                        failed = true;
                        for problem in &tally.problems {
                            println!("chaos: backend={backend} seed={seed} problem: {problem}");
                        }
                    }
                }
                Ok(None) => {
                    println!("chaos: backend={backend} skipped: its URL is not set");
                    failed |= std::env::var_os("CI").is_some();
                }
                Err(error) => {
                    println!("chaos: backend={backend} seed={seed} error: {error}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What one backend's run counted.
#[derive(Debug, Default)]
struct Tally {
    ops: usize,
    faults: u64,
    kills: usize,
    lost: usize,
    dup: usize,
    problems: Vec<String>,
}

/// The projection: one row per event handled.
struct Projector {
    table: &'static str,
}

impl<B: TestBackend> Handler<Order, B> for Projector {
    async fn handle(&mut self, tx: &mut Tx<'static, B>, event: &Envelope<Order>) -> Result<(), HandlerError> {
        let sql = format!("INSERT INTO {} (event_id) VALUES ({})", self.table, B::param(1));
        B::run_in(tx, &sql, vec![Arg::I64(event.position.id())]).await?;
        Ok(())
    }
}

impl<B: TestBackend> Projection<Order, B> for Projector {
    async fn reset(&mut self, tx: &mut Tx<'static, B>) -> Result<(), HandlerError> {
        B::run_in(tx, &format!("DELETE FROM {}", self.table), vec![]).await?;
        Ok(())
    }
}

fn consumer<B: Backend>(store: &Store<Order, B>, name: &str) -> Consumer<Order, B> {
    let quick = StreamOptions::default().poll_interval(Duration::from_millis(50)).gap_retry(Duration::from_millis(5));
    Consumer::new(store, name)
        .stream_options(quick)
        .backoff(Backoff::new(Duration::from_millis(1), Duration::from_millis(20)))
        .lease_ttl(Duration::from_secs(1))
}

async fn run<B: TestBackend>(name: &str, options: &Options) -> Result<Option<Tally>, String> {
    let Some(db) = B::create(&format!("chaos_{name}")).await else { return Ok(None) };
    let result = books::<B>(&db, options).await;
    drop(db);
    result.map(Some)
}

async fn books<B: TestBackend>(db: &TestDb<B>, options: &Options) -> Result<Tally, String> {
    let orders = db.store::<Order>().await;
    let tickets = db.store::<Ticket>().await;
    orders.create_support_tables().await.map_err(|e| e.to_string())?;
    for table in ["projection", "rebuilt"] {
        db.execute(&format!("CREATE TABLE {table} (event_id BIGINT NOT NULL)"), vec![]).await;
    }
    let mut tally = Tally::default();
    let started = Instant::now();

    // 1. Faults at every point, with retries, and a consumer under faults too.
    let fate = Fate::new(FAULTS, options.seed);
    let (faulty_orders, faulty_tickets) = (orders.clone().with_fate(fate), tickets.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let projecting = {
        let consumer = consumer(&faulty_orders, "chaos");
        tokio::spawn(async move {
            let mut projector = Projector { table: "projection" };
            consumer.run(&mut projector, async { drop(stopped.await) }).await
        })
    };
    // Four writers at once, as a service's requests would come.
    let deadline = Instant::now() + Duration::from_secs(300);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (orders, tickets) = (faulty_orders.clone(), faulty_tickets.clone());
            let (seed, quota) = (options.seed.wrapping_add(w), options.ops.div_ceil(WRITERS as usize));
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let (mut known, mut ops) = (Vec::new(), 0);
                while ops < quota && Instant::now() < deadline {
                    ops += step(&orders, &tickets, &mut rng, &mut known).await;
                }
                ops
            })
        })
        .collect();
    for writer in writers {
        tally.ops += writer.await.map_err(|e| format!("a writer panicked: {e}"))?;
    }
    let _ = stop.send(());
    match projecting.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tally.problems.push(format!("the consumer under faults stopped: {error}")),
        Err(error) => tally.problems.push(format!("the consumer under faults panicked: {error}")),
    }
    tally.faults = faulty_orders.fate().map_or(0, Fate::injected);

    // 2. Children killed at random moments, and restarted.
    let ack = std::env::temp_dir().join(format!("sf_chaos_ack_{}_{}", std::process::id(), options.seed));
    let _ = std::fs::remove_file(&ack);
    let spawn = |role: &str, seed: u64| -> Result<Child, String> {
        Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args([role, "--url", &db.url, "--backend", B::NAME, "--seed", &seed.to_string(), "--ack"])
            .arg(&ack)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the {role}: {e}"))
    };
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut worker = spawn("worker", rng.gen())?;
    let mut projector = spawn("projector", rng.gen())?;
    for _ in 0..options.kills {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(80..400))).await;
        let (victim, role) = if rng.gen_bool(0.5) { (&mut worker, "worker") } else { (&mut projector, "projector") };
        victim.kill().map_err(|e| format!("cannot kill: {e}"))?;
        victim.wait().map_err(|e| e.to_string())?;
        tally.kills += 1;
        *victim = spawn(role, rng.gen())?;
    }
    for child in [&mut worker, &mut projector] {
        let _ = child.kill();
        let _ = child.wait();
    }

    // 3. The books, once caught up.
    let acked = std::fs::read_to_string(&ack).unwrap_or_default();
    let _ = std::fs::remove_file(&ack);
    tally.ops += acked.lines().count();
    let settle = consumer(&orders, "chaos");
    settle.catch_up(&mut Projector { table: "projection" }).await.map_err(|e| e.to_string())?;
    let mut rebuilt = Projector { table: "rebuilt" };
    consumer(&orders, "chaos_rebuild")
        .rebuild(&mut rebuilt, std::future::pending())
        .await
        .map_err(|e| e.to_string())?;
    check::<B>(db, &orders, &tickets, &acked, &mut tally).await?;
    eprintln!("chaos: {} done in {:.1} s", B::NAME, started.elapsed().as_secs_f64());
    Ok(tally)
}

/// One operation, as a user would do it: retried until it is done.
/// Returns how many writes it made.
async fn step<B: Backend>(
    orders: &Store<Order, B>,
    tickets: &Store<Ticket, B>,
    rng: &mut StdRng,
    known: &mut Vec<i64>,
) -> usize {
    for _ in 0..1_000 {
        let roll = rng.gen_range(0..10);
        let done = match roll {
            0..=2 => orders.insert(placed(rng)).await.map(|order| known.push(*order.id())).map(|()| 1),
            3..=7 if !known.is_empty() => {
                let id = known[rng.gen_range(0..known.len())];
                advance(orders, id, rng).await.map(|moved| usize::from(moved.is_some()))
            }
            _ => several(orders, tickets, known, rng).await,
        };
        match done {
            Ok(writes) => return writes,
            // The write is durable; the caller does not know: as a user would, it goes on.
            Err(Error::InjectedFault { point: statefold::FaultPoint::AfterCommit }) => return 1,
            Err(_) => {}
        }
    }
    0
}

/// Moves an order on by id, whatever its state: its new version, or `None`
/// in a final state.
async fn advance<B: Backend>(orders: &Store<Order, B>, id: i64, rng: &mut StdRng) -> Result<Option<i64>, Error> {
    let next = match orders.load(&id).await? {
        OrderState::Placed(_) if rng.gen_bool(0.2) => Order::Cancelled { reason: "changed mind".into() },
        OrderState::Placed(_) => Order::Paid { payment_ref: format!("pay {id}") },
        OrderState::Paid(_) => Order::Shipped { tracking: format!("1Z{id}") },
        OrderState::Shipped(_) => Order::Delivered,
        OrderState::Cancelled(_) | OrderState::Delivered(_) => return Ok(None),
    };
    orders.transition(&id, next, Metadata::new().actor("chaos")).await.map(|state| Some(state.row().version))
}

/// Several records in one transaction: a new order, a new ticket, and an
/// existing order moved on.
async fn several<B: Backend>(
    orders: &Store<Order, B>,
    tickets: &Store<Ticket, B>,
    known: &mut Vec<i64>,
    rng: &mut StdRng,
) -> Result<usize, Error> {
    let mut tx = orders.begin().await?;
    let order = orders.insert_in(&mut tx, placed(rng)).await?;
    let ticket = TicketOpen { title: format!("about order {}", order.id()) };
    tickets.create_in(&mut tx, statefold::NewRecord::new(ticket).with_id(Uuid::new_v4())).await?;
    let mut writes = 2;
    if let Some(&id) = known.last() {
        if let OrderState::Placed(_) = orders.load_in(&mut tx, &id).await? {
            orders.transition_in(&mut tx, &id, Order::Paid { payment_ref: "batch".into() }, Metadata::new()).await?;
            writes += 1;
        }
    }
    tx.commit().await?;
    known.push(*order.id());
    Ok(writes)
}

fn placed(rng: &mut StdRng) -> OrderPlaced {
    OrderPlaced { customer: format!("customer {}", rng.gen_range(0..100)), amount_cents: rng.gen_range(1..100_000) }
}

/// The checks: acknowledged writes present, the audit clean, the
/// projection exactly once and equal to its rebuild.
async fn check<B: TestBackend>(
    db: &TestDb<B>,
    orders: &Store<Order, B>,
    tickets: &Store<Ticket, B>,
    acked: &str,
    tally: &mut Tally,
) -> Result<(), String> {
    for line in acked.lines() {
        let mut parts = line.split_whitespace();
        let (Some(id), Some(version)) = (parts.next(), parts.next()) else { continue };
        let (Ok(id), Ok(version)) = (id.parse::<i64>(), version.parse::<i64>()) else { continue };
        let history = orders.history(&id).await.map_err(|e| e.to_string())?;
        if !history.iter().any(|event| event.version == version) {
            tally.lost += 1;
            tally.problems.push(format!("acknowledged order {id} version {version} is not in the log"));
        }
    }
    for (machine, report) in [
        ("Order", orders.audit().await.map_err(|e| e.to_string())?),
        ("Ticket", tickets.audit().await.map_err(|e| e.to_string())?),
    ] {
        if !report.is_clean() {
            tally.problems.push(format!("{machine}: {report}"));
        }
    }
    let events: BTreeSet<i64> =
        B::integers(&db.pool, "SELECT id FROM order_events").await.map_err(|e| e.to_string())?.into_iter().collect();
    let mut projected: BTreeMap<i64, usize> = BTreeMap::new();
    for id in B::integers(&db.pool, "SELECT event_id FROM projection").await.map_err(|e| e.to_string())? {
        *projected.entry(id).or_default() += 1;
    }
    let missed = events.iter().filter(|id| !projected.contains_key(id)).count();
    tally.lost += missed;
    if missed > 0 {
        tally.problems.push(format!("the projection missed {missed} events"));
    }
    tally.dup += projected.values().map(|n| n - 1).sum::<usize>();
    let mut rebuilt: Vec<i64> =
        B::integers(&db.pool, "SELECT event_id FROM rebuilt").await.map_err(|e| e.to_string())?;
    rebuilt.sort_unstable();
    let mut once: Vec<i64> = projected.keys().copied().collect();
    once.sort_unstable();
    if rebuilt != once {
        tally.problems.push(format!("the rebuilt projection ({} rows) differs from the projection", rebuilt.len()));
    }
    Ok(())
}

/// What a child process does until it is killed.
#[derive(Clone, Copy)]
enum Role {
    Worker,
    Projector,
}

async fn child(args: &[String], role: Role) -> ExitCode {
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let (Some(url), Some(backend), Some(seed), Some(ack)) =
        (get("--url"), get("--backend"), get("--seed"), get("--ack"))
    else {
        eprintln!("chaos child: --url, --backend, --seed and --ack are needed");
        return ExitCode::from(2);
    };
    let seed: u64 = seed.parse().unwrap_or(0);
    let result = match backend.as_str() {
        "SQLite" => work::<Sqlite>(&url, seed, &ack, role).await,
        "PostgreSQL" => work::<Postgres>(&url, seed, &ack, role).await,
        "MySQL" => work::<MySql>(&url, seed, &ack, role).await,
        other => Err(format!("unknown backend `{other}`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chaos child: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs until killed (or, bounded, for two minutes at most).
async fn work<B: TestBackend>(url: &str, seed: u64, ack: &str, role: Role) -> Result<(), String> {
    let orders = Store::<Order, B>::connect(url).await.map_err(|e| e.to_string())?;
    let until = Instant::now() + Duration::from_secs(120);
    match role {
        Role::Projector => {
            let consumer = consumer(&orders, "chaos");
            let shutdown = tokio::time::sleep_until(until.into());
            consumer.run(&mut Projector { table: "projection" }, shutdown).await.map_err(|e| e.to_string())
        }
        Role::Worker => {
            let mut file =
                std::fs::OpenOptions::new().create(true).append(true).open(ack).map_err(|e| e.to_string())?;
            let mut rng = StdRng::seed_from_u64(seed);
            let mut known: Vec<i64> =
                B::integers(orders.pool(), "SELECT id FROM orders").await.map_err(|e| e.to_string())?;
            while Instant::now() < until {
                let written = if known.is_empty() || rng.gen_bool(0.3) {
                    orders.insert(placed(&mut rng)).await.map(|order| (*order.id(), order.version()))
                } else {
                    let id = known[rng.gen_range(0..known.len())];
                    match advance(&orders, id, &mut rng).await {
                        Ok(None) => continue,
                        Ok(Some(version)) => Ok((id, version)),
                        Err(error) => Err(error),
                    }
                };
                let Ok((id, version)) = written else { continue };
                if version == 1 {
                    known.push(id);
                }
                // Acknowledged only once it is on disk: a write acked is a write promised.
                writeln!(file, "{id} {version}").map_err(|e| e.to_string())?;
                file.sync_data().map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}
