//! Side effects: what a run costs against the transition alone, how fast
//! the dispatcher empties the outbox, and how long a message waits between
//! its run's commit and its send.
//!
//! - commands: N orders, placed beforehand (untimed), each paid by one call
//!   that carries its id. `transition`: `Store::transition(&id, Order::Paid
//!   { .. })`, one statement on PostgreSQL. `effects`: `Store::load(&id)`,
//!   then a pure handler's `Effects` (the transition and one message) run
//!   by `Runner::run` under a key of its own: the load, then one statement
//!   on PostgreSQL. Each timed run is a child process, as in `transitions`.
//! - dispatch: N messages put in the outbox beforehand, then a `Dispatcher`
//!   delivering them to a `Channel`; messages per second, per batch size.
//! - commit-to-send: 8 clients paying orders through effects as fast as
//!   they can while one dispatcher in the same process delivers (it wakes
//!   after each run's commit); latency from just before the run to the
//!   delivery, with the run's own duration to subtract.

use crate::child::{self, Run};
use crate::latency::{millis, percentile};
use crate::scratch::Scratch;
use crate::{median, BoxError, Db, Options, Order, OrderPaid, OrderPlaced, OrderState, Side, RUN_LIMIT};
use statefold::effects::{Channel, Delivery, Dispatcher, Effects, Message, Runner};
use statefold::{Backend, Metadata, MySql, Postgres, Record, Sqlite, Store};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The clients of the commit-to-send measurement.
const WRITERS: usize = 8;
/// The longest wait for one delivery.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// The pure handler: pay a placed order and say so.
fn pay(order: Record<Order, crate::OrderPlaced>, payment_ref: String) -> Effects {
    let id = *order.id();
    Effects::new().transition(order.transition(OrderPaid { payment_ref })).message(Message::new(
        "order-paid",
        id.to_string(),
        &serde_json::json!({ "order": id }),
    ))
}

/// Places `count` orders, 8 at a time; their ids.
async fn place<B: Backend>(store: &Store<Order, B>, count: usize) -> Result<Vec<i64>, BoxError> {
    let tasks: Vec<_> = (0..8)
        .map(|client| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in (client..count).step_by(8) {
                    let placed = store.insert(OrderPlaced { customer: format!("customer {n}"), amount_cents: 4200 });
                    ids.push(*placed.await?.id());
                }
                Ok::<_, BoxError>(ids)
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(count);
    for task in tasks {
        ids.extend(task.await??);
    }
    Ok(ids)
}

/// Pays one order through `side`; the version it reached.
async fn pay_one<B: Backend>(
    store: &Store<Order, B>,
    runner: &Runner<B>,
    side: Side,
    prefix: &str,
    id: i64,
) -> Result<(), BoxError> {
    let payment_ref = format!("pay_{id}");
    if side == Side::Transition {
        store.transition(&id, Order::Paid { payment_ref }, Metadata::new()).await?;
        return Ok(());
    }
    let OrderState::Placed(placed) = store.load(&id).await? else {
        return Err(format!("order {id} is not placed").into());
    };
    let ran = runner.run(&format!("{prefix}-{id}"), &pay(placed, payment_ref)).await?;
    if ran.replayed || ran.outcome.transitions[0].version != 2 {
        return Err(format!("order {id}: {ran:?}").into());
    }
    Ok(())
}

/// Pays `ids` split over `clients` concurrent clients; the elapsed time.
async fn drive<B: Backend>(
    store: &Store<Order, B>,
    runner: &Runner<B>,
    side: Side,
    clients: usize,
    prefix: &str,
    ids: &[i64],
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (store, runner, prefix) = (store.clone(), runner.clone(), prefix.to_owned());
            let ids: Vec<i64> = ids.iter().copied().skip(client).step_by(clients).collect();
            tokio::spawn(async move {
                for id in ids {
                    pay_one(&store, &runner, side, &prefix, id).await?;
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

/// One timed run of `side`: orders placed (untimed), a short warm-up, then
/// `count` payments; payments per second.
async fn timed<B: Backend>(url: &str, side: Side, clients: usize, count: usize) -> Result<f64, BoxError> {
    let store = Store::<Order, B>::connect(url).await?;
    store.create_support_tables().await?;
    let runner = Runner::new(store.pool().clone()).with_store(&store);
    // Keys of their own: the tables are emptied between runs, not the keys.
    let prefix = format!("pay-{}", std::process::id());
    let ids = place(&store, count + 4 * clients).await?;
    drive(&store, &runner, side, clients, &prefix, &ids[count..]).await?;
    let elapsed = tokio::time::timeout(RUN_LIMIT, drive(&store, &runner, side, clients, &prefix, &ids[..count]))
        .await
        .map_err(|_| format!("{count} payments took more than {RUN_LIMIT:?}"))??;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Child mode: one side of the commands, once.
pub(crate) async fn side(db: Db, side: Side, url: &str, clients: usize, count: usize) -> Result<f64, BoxError> {
    if !matches!(side, Side::Transition | Side::Effects) {
        return Err("--bench effects takes --side transition or effects".into());
    }
    match db {
        Db::Sqlite => timed::<Sqlite>(url, side, clients, count).await,
        Db::Postgres => timed::<Postgres>(url, side, clients, count).await,
        Db::MySql => timed::<MySql>(url, side, clients, count).await,
    }
}

/// Puts `count` messages in the outbox, each under a key of its own (the
/// dispatcher sends one message per key at a time), 100 per run.
async fn fill<B: Backend>(runner: &Runner<B>, count: usize) -> Result<(), BoxError> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("fill-{}-{nanos}", std::process::id());
    for (run, first) in (0..count).step_by(100).enumerate() {
        let effects: Effects = (first..count.min(first + 100))
            .map(|n| Effects::new().message(Message::new("order-paid", n.to_string(), &serde_json::json!({ "n": n }))))
            .sum();
        runner.run(&format!("{prefix}-{run}"), &effects).await?;
    }
    Ok(())
}

/// Runs `dispatcher` until the returned sender is dropped.
fn start<B: Backend>(dispatcher: Dispatcher<B>) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        if let Err(error) = dispatcher.run(async { drop(stopped.await) }).await {
            eprintln!("the dispatcher stopped: {error}");
        }
    });
    (stop, task)
}

/// Receives `count` deliveries.
async fn receive(deliveries: &mut mpsc::UnboundedReceiver<Delivery>, count: usize) -> Result<(), BoxError> {
    for _ in 0..count {
        tokio::time::timeout(WAIT_LIMIT, deliveries.recv())
            .await
            .map_err(|_| format!("no delivery within {WAIT_LIMIT:?}"))?
            .ok_or("the channel closed")?;
    }
    Ok(())
}

/// Messages per second from a full outbox of `count` to the last delivery,
/// reading `batch` rows at a time.
async fn dispatch<B: Backend>(url: &str, count: usize, batch: u32) -> Result<f64, BoxError> {
    let store = Store::<Order, B>::connect(url).await?;
    store.create_support_tables().await?;
    let runner = Runner::<B>::new(store.pool().clone());
    fill(&runner, count).await?;
    let (channel, mut deliveries) = Channel::new();
    let dispatcher = Dispatcher::<B>::new(store.pool().clone()).messages(channel).batch_size(batch);
    let start_time = Instant::now();
    let (stop, task) = start(dispatcher);
    receive(&mut deliveries, count).await?;
    let elapsed = start_time.elapsed();
    drop(stop);
    task.await?;
    let left = Dispatcher::<B>::new(store.pool().clone()).pending().await?;
    if left != 0 {
        return Err(format!("{left} messages still pending after every delivery").into());
    }
    store.pool().close().await;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Commit-to-send latency: `WRITERS` clients pay `count` orders through
/// effects while one dispatcher delivers.
async fn latency<B: Backend>(url: &str, count: usize) -> Result<Latency, BoxError> {
    let store = Store::<Order, B>::connect(url).await?;
    store.create_support_tables().await?;
    let runner = Runner::new(store.pool().clone()).with_store(&store);
    let ids = place(&store, count).await?;
    let (channel, mut deliveries) = Channel::new();
    let (stop, task) = start(Dispatcher::<B>::new(store.pool().clone()).messages(channel));
    let prefix = format!("latency-{}", std::process::id());
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|client| {
            let (store, runner, prefix) = (store.clone(), runner.clone(), prefix.clone());
            let ids: Vec<i64> = ids.iter().copied().skip(client).step_by(WRITERS).collect();
            tokio::spawn(async move {
                let mut sent = Vec::with_capacity(ids.len());
                for id in ids {
                    let OrderState::Placed(placed) = store.load(&id).await? else {
                        return Err::<_, BoxError>(format!("order {id} is not placed").into());
                    };
                    let effects = pay(placed, format!("pay_{id}"));
                    let start = Instant::now();
                    let ran = runner.run(&format!("{prefix}-{id}"), &effects).await?;
                    sent.push((ran.outcome.message_ids[0].clone(), start, start.elapsed()));
                }
                Ok(sent)
            })
        })
        .collect();
    let mut arrived = HashMap::with_capacity(count);
    while arrived.len() < count {
        let delivery = tokio::time::timeout(WAIT_LIMIT, deliveries.recv())
            .await
            .map_err(|_| format!("no delivery within {WAIT_LIMIT:?}"))?
            .ok_or("the channel closed")?;
        arrived.insert(delivery.id, Instant::now());
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    drop(stop);
    task.await?;
    let mut latency = Latency::default();
    for writer in writers {
        for (id, start, took) in writer.await?? {
            let at = arrived.get(&id).ok_or("a message was not delivered")?;
            latency.from_start.push(at.duration_since(start));
            // Zero when the delivery came before the run returned to its caller.
            latency.from_return.push(at.saturating_duration_since(start + took));
            latency.runs.push(took);
        }
    }
    latency.from_start.sort();
    latency.from_return.sort();
    latency.runs.sort();
    latency.rate = rate;
    store.pool().close().await;
    Ok(latency)
}

/// What the commit-to-send measurement found.
#[derive(Default)]
struct Latency {
    /// From just before each run to its message's delivery (the run included).
    from_start: Vec<Duration>,
    /// From each run's return (just after its commit) to the delivery.
    from_return: Vec<Duration>,
    /// Each run's own duration.
    runs: Vec<Duration>,
    /// Payments per second, first run to last delivery.
    rate: f64,
}

/// Empties the outbox and the keys (the runs of the commands leave their
/// messages there), so that each measurement starts from a table with
/// nothing pending and no deleted rows.
async fn empty(db: Db, url: &str) -> Result<(), BoxError> {
    use sqlx::Executor;
    match db {
        Db::Sqlite => {
            let pool = Sqlite::connect(url).await?;
            pool.execute("DELETE FROM statefold_outbox").await?;
            pool.execute("DELETE FROM statefold_idempotency").await?;
            pool.close().await;
        }
        Db::Postgres => {
            let pool = Postgres::connect(url).await?;
            pool.execute("TRUNCATE statefold_outbox, statefold_idempotency").await?;
            pool.close().await;
        }
        Db::MySql => {
            let pool = MySql::connect(url).await?;
            pool.execute("TRUNCATE TABLE statefold_outbox").await?;
            pool.execute("TRUNCATE TABLE statefold_idempotency").await?;
            pool.close().await;
        }
    }
    Ok(())
}

async fn server_side<B: Backend>(db: Db, url: &str, options: &Options) -> Result<Vec<String>, BoxError> {
    let count = options.orders.max(1_000) * 10;
    let store = Store::<Order, B>::connect(url).await?;
    store.create_support_tables().await?;
    store.pool().close().await;
    let mut lines = Vec::new();
    for batch in [100, 1_000] {
        let mut rates = Vec::new();
        for _ in 0..options.rounds {
            empty(db, url).await?;
            rates.push(dispatch::<B>(url, count, batch).await?);
        }
        let (low, high) = rates.iter().fold((f64::MAX, 0.0_f64), |(l, h), r| (l.min(*r), h.max(*r)));
        lines.push(format!(
            "{:<12} dispatch, batch {batch:<5} {:>10.0} msgs/s  (range {low:.0}-{high:.0}, {count} messages)",
            db.label(),
            median(rates)
        ));
    }
    empty(db, url).await?;
    let l = latency::<B>(url, options.orders.max(1_000) * 2).await?;
    lines.push(format!(
        "{:<12} commit-to-send, {WRITERS} clients, {} payments at {:.0}/s: from before the run p50 {:.2} ms, \
         p99 {:.2} ms; from its return p50 {:.2} ms, p99 {:.2} ms; the run alone p50 {:.2} ms",
        db.label(),
        l.runs.len(),
        l.rate,
        millis(percentile(&l.from_start, 0.5)),
        millis(percentile(&l.from_start, 0.99)),
        millis(percentile(&l.from_return, 0.5)),
        millis(percentile(&l.from_return, 0.99)),
        millis(percentile(&l.runs, 0.5)),
    ));
    Ok(lines)
}

pub(crate) async fn run(options: &Options) -> Result<(), BoxError> {
    println!(
        "side effects, {} orders per run, median of {} rounds, each run of the commands in its own process\n\
         transition: Store::transition(&id, Order::Paid {{ .. }}); effects: Store::load(&id), then Runner::run of \
         the transition and one message\n",
        options.orders, options.rounds
    );
    println!(
        "{:<32} {}",
        "backend, clients",
        crate::transitions::columns().replacen("statefold", "  effects", 1).replacen("      hand", "transition", 1)
    );
    let mut lines = Vec::new();
    let mut commands = Vec::new();
    for &db in &options.backends {
        let scratch = Scratch::create(db, options.server(db)?, "effects").await?;
        let result = async {
            for &clients in &options.clients {
                let (mut ours, mut theirs): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
                let rest = ["--clients".to_owned(), clients.to_string(), "--orders".into(), options.orders.to_string()];
                for round in 0..options.rounds {
                    let sides = if round % 2 == 0 {
                        [Side::Effects, Side::Transition]
                    } else {
                        [Side::Transition, Side::Effects]
                    };
                    for side in sides {
                        scratch.reset().await?;
                        let run = child::spawn(&child::args("effects", db, side, &scratch.url, &rest)).await?;
                        if side == Side::Effects { &mut ours } else { &mut theirs }.push(run);
                    }
                }
                crate::transitions::report(&format!("{}, {clients}", db.label()), &ours, &theirs, 32);
            }
            scratch.reset().await?;
            lines.extend(match db {
                Db::Sqlite => server_side::<Sqlite>(db, &scratch.url, options).await?,
                Db::Postgres => server_side::<Postgres>(db, &scratch.url, options).await?,
                Db::MySql => server_side::<MySql>(db, &scratch.url, options).await?,
            });
            Ok::<_, BoxError>(())
        }
        .await;
        scratch.remove().await?;
        result?;
        commands.push(format!(
            "cargo run --release -p statefold-bench -- --bench effects --backend {} --clients {} --orders {} --rounds {}",
            db.flag(),
            options.clients.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            options.orders,
            options.rounds
        ));
    }
    println!(
        "\npayments/s; ratio = effects / transition, of the medians; paired and range: of each round's ratio; \
         other = transition; MiB: each child's peak RSS (VmHWM)\n"
    );
    for line in lines {
        println!("{line}");
    }
    println!("\neach backend, with the server URLs in STATEFOLD_TEST_POSTGRES_URL / STATEFOLD_TEST_MYSQL_URL:");
    for command in commands {
        println!("  {command}");
    }
    println!();
    Ok(())
}
