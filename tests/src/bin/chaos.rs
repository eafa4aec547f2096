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
//!    Some payments are side effects: the order's transition and a receipt
//!    message run as `Effects` under an idempotency key (the runner under
//!    faults too), and an outbox dispatcher, under faults at every send,
//!    delivers the receipts to a receiver that records each delivery.
//! 2. **SIGKILL.** A worker child (which writes, and after each committed
//!    write appends it to an acknowledgement file it fsyncs; it also pays
//!    with receipts), a projector child (a consumer with an SQL projection)
//!    and a dispatcher child (the outbox's) are killed at random moments and
//!    restarted, `--kills` times.
//!
//! Afterwards, caught up: every acknowledged write is in the database
//! (`lost` counts those that are not, events a projection missed, and
//! receipts the receiver never got), no row version lacks its event or the
//! reverse (the audit is clean), the projection holds each event exactly
//! once (`dup` counts the extra ones, and receipts that reached the receiver
//! under two message ids) and equals its rebuild, and no receipt was
//! dead-lettered. One line per backend says so:
//!
//! ```text
//! chaos: backend=postgres seed=7 ops=5412 faults=2310 kills=20 lost=0 dup=0
//! ```
//!
//! The process exits non-zero when anything is lost, duplicated or unclean.
//! Seeds that ever failed are kept in [`REGRESSIONS`] and run every time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statefold::effects::{Delivery, Destination, Dispatcher, Effects, Message, Outgoing, Runner, SendError};
use statefold::{
    Backend, Backoff, Consumer, Envelope, Error, Fate, Handler, HandlerError, Metadata, MySql, Postgres, Projection,
    Sqlite, Store, StreamOptions, Tx,
};
use statefold_tests::db::{Arg, TestBackend, TestDb};
use statefold_tests::machines::{Order, OrderPaid, OrderPlaced, OrderState, Ticket, TicketOpen};
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
        Some("dispatcher") => child(&args[1..], Role::Dispatcher).await,
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
                        "chaos: backend={backend} seed={seed} ops={} faults={} kills={} lost={} dup={} receipts={}",
                        tally.ops, tally.faults, tally.kills, tally.lost, tally.dup, tally.receipts
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
    /// Receipts committed (each delivered once, if all is well).
    receipts: usize,
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

/// The receipts' receiver: records every delivery it gets, in a table of
/// the test database (outside the outbox's transaction, as a remote
/// receiver would), with the command it carries and its message id. A
/// receiver that deduplicates by message id keeps one of each; two message
/// ids for one command would be a duplicate no receiver could catch.
struct Receiver<B: Backend> {
    pool: sqlx::Pool<B::Db>,
}

impl<B: TestBackend> Destination for Receiver<B> {
    async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let Outgoing::Message(message) = &delivery.outgoing else {
            return Err(SendError::permanent("the receiver takes messages only"));
        };
        let Some(command) = message.payload.get("command").and_then(|c| c.as_str()) else {
            return Err(SendError::permanent("a receipt without its command"));
        };
        let sql = format!("INSERT INTO received (entry) VALUES ({})", B::param(1));
        let entry = Arg::Text(format!("{command} {}", delivery.id));
        B::run_sql(&self.pool, &sql, vec![entry]).await.map_err(|e| SendError::retryable(e.to_string()))?;
        Ok(())
    }
}

/// The outbox's dispatcher, delivering receipts to the [`Receiver`].
fn dispatcher<B: TestBackend>(pool: &sqlx::Pool<B::Db>) -> Dispatcher<B> {
    Dispatcher::<B>::new(pool.clone())
        .messages(Receiver::<B> { pool: pool.clone() })
        .backoff(Backoff::new(Duration::from_millis(1), Duration::from_millis(20)))
        .poll_interval(Duration::from_millis(50))
        .lease_ttl(Duration::from_secs(1))
        .max_attempts(100_000)
}

/// Pays an order with a receipt, as side effects under the idempotency key
/// `receipt-<id>`: the transition (its payment reference is the key) and a
/// receipt message, in one transaction. An order no longer placed gets no
/// effects (the key then records an empty outcome). Whether it paid.
async fn pay_with_receipt<B: Backend>(orders: &Store<Order, B>, runner: &Runner<B>, id: i64) -> Result<bool, Error> {
    let key = format!("receipt-{id}");
    let effects =
        match orders.load(&id).await? {
            OrderState::Placed(order) => {
                let receipt = serde_json::json!({ "order": id, "command": key });
                Effects::new()
                    .transition(order.transition(OrderPaid { payment_ref: key.clone() }))
                    .message(Message::new("receipts", id.to_string(), &receipt))
            }
            _ => Effects::new(),
        };
    let ran = runner.run(&key, &effects).await?;
    Ok(!ran.outcome.message_ids.is_empty())
}

/// The commands of every receipt payment in the log (the outbox holds one
/// receipt for each, committed with it).
#[derive(Default)]
struct Receipts(BTreeSet<String>);

impl<B: Backend> Handler<Order, B> for Receipts {
    async fn handle(&mut self, _: &mut Tx<'static, B>, event: &Envelope<Order>) -> Result<(), HandlerError> {
        if let Order::Paid { payment_ref } = &event.event {
            if payment_ref.starts_with("receipt-") {
                self.0.insert(payment_ref.clone());
            }
        }
        Ok(())
    }
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
    db.execute("CREATE TABLE received (entry VARCHAR(255) NOT NULL)", vec![]).await;
    let mut tally = Tally::default();
    let started = Instant::now();

    // 1. Faults at every point, with retries, and a consumer under faults too.
    let fate = Fate::new(FAULTS, options.seed);
    let (faulty_orders, faulty_tickets) = (orders.clone().with_fate(fate), tickets.clone());
    let runner = Runner::new(db.pool.clone()).with_store(&orders).with_fate(Fate::new(FAULTS, options.seed ^ 0x5eed));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let projecting = {
        let consumer = consumer(&faulty_orders, "chaos");
        tokio::spawn(async move {
            let mut projector = Projector { table: "projection" };
            consumer.run(&mut projector, async { drop(stopped.await) }).await
        })
    };
    let (stop_sending, stopped_sending) = tokio::sync::oneshot::channel::<()>();
    let dispatching = {
        let dispatcher = dispatcher::<B>(&db.pool).with_fate(Fate::new(FAULTS, options.seed ^ 0xd15));
        tokio::spawn(async move {
            dispatcher.run(async { drop(stopped_sending.await) }).await?;
            Ok::<_, Error>(dispatcher.fate().map_or(0, Fate::injected))
        })
    };
    // Four writers at once, as a service's requests would come.
    let deadline = Instant::now() + Duration::from_secs(300);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (orders, tickets, runner) = (faulty_orders.clone(), faulty_tickets.clone(), runner.clone());
            let (seed, quota) = (options.seed.wrapping_add(w), options.ops.div_ceil(WRITERS as usize));
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let (mut known, mut ops) = (Vec::new(), 0);
                while ops < quota && Instant::now() < deadline {
                    ops += step(&orders, &tickets, &runner, &mut rng, &mut known).await;
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
    let _ = stop_sending.send(());
    match dispatching.await {
        Ok(Ok(faults)) => tally.faults += faults,
        Ok(Err(error)) => tally.problems.push(format!("the dispatcher under faults stopped: {error}")),
        Err(error) => tally.problems.push(format!("the dispatcher under faults panicked: {error}")),
    }
    tally.faults += faulty_orders.fate().map_or(0, Fate::injected) + runner.fate().map_or(0, Fate::injected);

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
    let roles = ["worker", "projector", "dispatcher"];
    let mut children = Vec::new();
    for role in roles {
        children.push(spawn(role, rng.gen())?);
    }
    for _ in 0..options.kills {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(80..400))).await;
        let victim = rng.gen_range(0..roles.len());
        children[victim].kill().map_err(|e| format!("cannot kill: {e}"))?;
        children[victim].wait().map_err(|e| e.to_string())?;
        tally.kills += 1;
        children[victim] = spawn(roles[victim], rng.gen())?;
    }
    for child in &mut children {
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
    deliver_the_rest::<B>(db, &mut tally).await?;
    check::<B>(db, &orders, &tickets, &acked, &mut tally).await?;
    eprintln!("chaos: {} done in {:.1} s", B::NAME, started.elapsed().as_secs_f64());
    Ok(tally)
}

/// Runs a dispatcher without faults until the outbox is empty (bounded),
/// so that every receipt committed is delivered before the books.
async fn deliver_the_rest<B: TestBackend>(db: &TestDb<B>, tally: &mut Tally) -> Result<(), String> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let dispatcher = dispatcher::<B>(&db.pool);
        tokio::spawn(async move { dispatcher.run(async { drop(stopped.await) }).await })
    };
    let outbox = Dispatcher::<B>::new(db.pool.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    // The outbox has no signal for "empty": it is counted, every 50 ms, for two minutes at most.
    while outbox.pending().await.map_err(|e| e.to_string())? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    running.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let dead = outbox.dead_letters().await.map_err(|e| e.to_string())?;
    if !dead.is_empty() {
        tally.problems.push(format!("{} receipts were dead-lettered", dead.len()));
    }
    Ok(())
}

/// One operation, as a user would do it: retried until it is done.
/// Returns how many writes it made.
async fn step<B: Backend>(
    orders: &Store<Order, B>,
    tickets: &Store<Ticket, B>,
    runner: &Runner<B>,
    rng: &mut StdRng,
    known: &mut Vec<i64>,
) -> usize {
    for _ in 0..1_000 {
        let roll = rng.gen_range(0..10);
        let done = match roll {
            0..=2 => orders.insert(placed(rng)).await.map(|order| known.push(*order.id())).map(|()| 1),
            3..=6 if !known.is_empty() => {
                let id = known[rng.gen_range(0..known.len())];
                advance(orders, id, rng).await.map(|moved| usize::from(moved.is_some()))
            }
            7 if !known.is_empty() => {
                let id = known[rng.gen_range(0..known.len())];
                pay_with_receipt(orders, runner, id).await.map(usize::from)
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

    // Every receipt committed reached the receiver, under one message id.
    let mut receipts = Receipts::default();
    consumer(orders, "chaos_receipts").catch_up(&mut receipts).await.map_err(|e| e.to_string())?;
    let mut received: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in B::texts(&db.pool, "SELECT entry FROM received").await.map_err(|e| e.to_string())? {
        let (command, id) = entry.split_once(' ').ok_or_else(|| format!("a malformed delivery: {entry}"))?;
        received.entry(command.to_owned()).or_default().insert(id.to_owned());
    }
    let undelivered = receipts.0.iter().filter(|command| !received.contains_key(*command)).count();
    tally.lost += undelivered;
    if undelivered > 0 {
        tally.problems.push(format!("{undelivered} of {} receipts never reached the receiver", receipts.0.len()));
    }
    tally.dup += received.values().map(|ids| ids.len() - 1).sum::<usize>();
    let phantoms: Vec<&String> = received.keys().filter(|command| !receipts.0.contains(*command)).collect();
    if !phantoms.is_empty() {
        tally.problems.push(format!("receipts of payments that never committed: {phantoms:?}"));
    }
    tally.receipts = receipts.0.len();
    Ok(())
}

/// What a child process does until it is killed.
#[derive(Clone, Copy)]
enum Role {
    Worker,
    Projector,
    Dispatcher,
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
        Role::Dispatcher => {
            let shutdown = tokio::time::sleep_until(until.into());
            dispatcher::<B>(orders.pool()).run(shutdown).await.map_err(|e| e.to_string())
        }
        Role::Worker => {
            let mut file =
                std::fs::OpenOptions::new().create(true).append(true).open(ack).map_err(|e| e.to_string())?;
            // A line the previous worker was killed in the middle of ends here,
            // so that it is never read as part of this worker's first line.
            let written = std::fs::read(ack).map_err(|e| e.to_string())?;
            if written.last().is_some_and(|&byte| byte != b'\n') {
                file.write_all(b"\n").map_err(|e| e.to_string())?;
            }
            let mut rng = StdRng::seed_from_u64(seed);
            let mut known: Vec<i64> =
                B::integers(orders.pool(), "SELECT id FROM orders").await.map_err(|e| e.to_string())?;
            let runner = Runner::new(orders.pool().clone()).with_store(&orders);
            while Instant::now() < until {
                if !known.is_empty() && rng.gen_bool(0.2) {
                    // Its receipt is checked at the receiver, not acknowledged here.
                    let _ = pay_with_receipt(&orders, &runner, known[rng.gen_range(0..known.len())]).await;
                    continue;
                }
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
                // Acknowledged only once it is on disk: a write acked is a write
                // promised. One `write` call per line: a line written in pieces
                // could be cut by the kill and joined to the next worker's first.
                file.write_all(format!("{id} {version}\n").as_bytes()).map_err(|e| e.to_string())?;
                file.sync_data().map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}
