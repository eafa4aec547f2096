//! Commands by id: N orders, each placed, paid and shipped in three separate
//! calls, as a service receives them. The statefold side calls
//! `Store::insert`, then `Store::transition(&id, Order::Paid { .. },
//! Metadata::new())` and the same for `Shipped`, keeping nothing but the id
//! between calls; the hand-written side is in `hand.rs`.

use crate::child::{self, Run};
use crate::hand::{HandMySql, HandPg, HandSqlite, Orders};
use crate::scratch::Scratch;
use crate::{median, BoxError, Db, Options, Order, OrderPlaced, Side, RUN_LIMIT};
use statefold::{Backend, Metadata, MySql, Postgres, Row, Sqlite, Store};
use std::time::{Duration, Instant};

/// Commands per order: place, pay, ship.
const COMMANDS_PER_ORDER: usize = 3;

impl<B: Backend> Orders for Store<Order, B> {
    async fn place(&self, customer: String, amount_cents: i64) -> Result<i64, BoxError> {
        Ok(*self.insert(OrderPlaced { customer, amount_cents }).await?.id())
    }

    async fn pay(&self, id: i64, payment_ref: String) -> Result<i64, BoxError> {
        Ok(self.transition(&id, Order::Paid { payment_ref }, Metadata::new()).await?.row().version())
    }

    async fn ship(&self, id: i64, tracking: String) -> Result<i64, BoxError> {
        Ok(self.transition(&id, Order::Shipped { tracking }, Metadata::new()).await?.row().version())
    }
}

/// Order `n`, its three commands in turn.
async fn order<O: Orders>(orders: &O, n: usize) -> Result<i64, BoxError> {
    let id = orders.place(format!("customer {n}"), 4200).await?;
    let paid = orders.pay(id, format!("pay_{n}")).await?;
    let shipped = orders.ship(id, format!("trk_{n}")).await?;
    if (paid, shipped) != (2, 3) {
        return Err(format!("order {id} reached versions {paid} and {shipped}, not 2 and 3").into());
    }
    Ok(id)
}

/// Orders `first..last` split over `clients` concurrent clients; the elapsed time.
async fn drive<O: Orders>(orders: &O, clients: usize, first: usize, last: usize) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let orders = orders.clone();
            tokio::spawn(async move {
                for n in (first + client..last).step_by(clients) {
                    order(&orders, n).await?;
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

/// One timed run: a short warm-up (connections open, statements prepared),
/// then `orders` orders; commands per second.
async fn timed<O: Orders>(orders: O, clients: usize, count: usize) -> Result<f64, BoxError> {
    drive(&orders, clients, count, count + 4 * clients).await?;
    let elapsed = tokio::time::timeout(RUN_LIMIT, drive(&orders, clients, 0, count))
        .await
        .map_err(|_| format!("{count} orders took more than {RUN_LIMIT:?}"))??;
    Ok((count * COMMANDS_PER_ORDER) as f64 / elapsed.as_secs_f64())
}

/// Child mode: one side, once. Both sides open their pool with `Backend::connect`.
pub(crate) async fn side(db: Db, side: Side, url: &str, clients: usize, orders: usize) -> Result<f64, BoxError> {
    match (db, side) {
        (Db::Sqlite, Side::Statefold) => timed(Store::<Order, Sqlite>::connect(url).await?, clients, orders).await,
        (Db::Postgres, Side::Statefold) => timed(Store::<Order, Postgres>::connect(url).await?, clients, orders).await,
        (Db::MySql, Side::Statefold) => timed(Store::<Order, MySql>::connect(url).await?, clients, orders).await,
        (Db::Sqlite, Side::Hand) => timed(HandSqlite(Sqlite::connect(url).await?), clients, orders).await,
        (Db::Postgres, Side::Hand) => timed(HandPg(Postgres::connect(url).await?), clients, orders).await,
        (Db::MySql, Side::Hand) => timed(HandMySql(MySql::connect(url).await?), clients, orders).await,
        (_, Side::Fenced | Side::Grpc) => Err("--side fenced and --side grpc are catch-up sides".into()),
    }
}

/// Checks, untimed, that the hand-written side writes what statefold writes:
/// one order through each, the same events (kinds, states, versions,
/// payloads, metadata), and rows that equal the fold of their events.
async fn check_same_writes<B: Backend, H: Orders>(
    url: &str,
    hand: impl FnOnce(sqlx::Pool<B::Db>) -> H,
) -> Result<(), BoxError> {
    let store = Store::<Order, B>::connect(url).await?;
    let hand = hand(store.pool().clone());
    let ours = order(&store, 0).await?;
    let theirs = order(&hand, 0).await?;
    let summary = |events: Vec<statefold::Envelope<Order>>| {
        events.into_iter().map(|e| (e.event, e.from, e.to, e.version, e.metadata)).collect::<Vec<_>>()
    };
    let (ours, theirs) = (summary(store.history(&ours).await?), summary(store.history(&theirs).await?));
    if ours.len() != 3 || ours != theirs {
        return Err(format!("the hand-written side writes other events:\n{ours:?}\n{theirs:?}").into());
    }
    let audit = store.audit().await?;
    if !audit.is_clean() || audit.records != 2 {
        return Err(format!("audit after one order per side: {audit:?}").into());
    }
    store.pool().close().await;
    Ok(())
}

/// The command that reproduces one row of the table.
fn command(db: Db, clients: usize, options: &Options) -> String {
    format!(
        "cargo run --release -p statefold-bench -- --bench transitions --backend {} --clients {clients} --orders {} --rounds {}",
        db.flag(),
        options.orders,
        options.rounds
    )
}

/// The heads of [`report`]'s columns, after the first.
pub(crate) fn columns() -> String {
    let heads = ["statefold", "hand", "ratio", "paired", "range", "sf MiB", "other MiB"];
    format!(
        "{:>10} {:>10} {:>6} {:>6} {:>11} {:>8} {:>9}",
        heads[0], heads[1], heads[2], heads[3], heads[4], heads[5], heads[6]
    )
}

/// A row of the table: each side's median rate, the ratio of the medians,
/// the median and range of the rounds' own ratios (each round's two runs
/// ran back to back, so their ratio shrugs off slower drifts in the
/// machine's load), and each side's largest peak.
pub(crate) fn report(label: &str, ours: &[Run], theirs: &[Run], width: usize) {
    let rate = |runs: &[Run]| median(runs.iter().map(|r| r.rate).collect());
    let peak = |runs: &[Run]| runs.iter().map(|r| r.peak_mib).fold(0.0, f64::max);
    let ratios: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a.rate / b.rate).collect();
    let (low, high) = ratios.iter().fold((f64::MAX, 0.0_f64), |(l, h), r| (l.min(*r), h.max(*r)));
    let (ours_rate, theirs_rate) = (rate(ours), rate(theirs));
    println!(
        "{label:<width$} {ours_rate:>10.0} {theirs_rate:>10.0} {:>6.2} {:>6.2} {:>11} {:>8.1} {:>9.1}",
        ours_rate / theirs_rate,
        median(ratios),
        format!("{low:.2}-{high:.2}"),
        peak(ours),
        peak(theirs)
    );
}

pub(crate) async fn run(options: &Options) -> Result<(), BoxError> {
    println!(
        "commands by id: place, then pay and ship by order id, {} orders ({} commands) per run, \
         median of {} rounds, each run in its own process\n",
        options.orders,
        options.orders * COMMANDS_PER_ORDER,
        options.rounds
    );
    println!("{:<22} {}", "backend, clients", columns());
    let mut commands = Vec::new();
    for &db in &options.backends {
        let scratch = Scratch::create(db, options.server(db)?, "transitions").await?;
        let result = async {
            match db {
                Db::Sqlite => check_same_writes::<Sqlite, _>(&scratch.url, HandSqlite).await?,
                Db::Postgres => check_same_writes::<Postgres, _>(&scratch.url, HandPg).await?,
                Db::MySql => check_same_writes::<MySql, _>(&scratch.url, HandMySql).await?,
            }
            for &clients in &options.clients {
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                let rest = ["--clients".to_owned(), clients.to_string(), "--orders".into(), options.orders.to_string()];
                for round in 0..options.rounds {
                    let sides =
                        if round % 2 == 0 { [Side::Statefold, Side::Hand] } else { [Side::Hand, Side::Statefold] };
                    for side in sides {
                        scratch.reset().await?;
                        let run = child::spawn(&child::args("transitions", db, side, &scratch.url, &rest)).await?;
                        if side == Side::Statefold { &mut ours } else { &mut theirs }.push(run);
                    }
                }
                report(&format!("{}, {clients}", db.label()), &ours, &theirs, 22);
                commands.push(command(db, clients, options));
            }
            Ok::<_, BoxError>(())
        }
        .await;
        scratch.remove().await?;
        result?;
    }
    println!(
        "\ncommands/s; ratio = statefold / hand, of the medians; paired and range: of each round's ratio; \
         other = hand; MiB: each child's peak RSS (VmHWM)"
    );
    println!("each row, with the server URLs in STATEFOLD_TEST_POSTGRES_URL / STATEFOLD_TEST_MYSQL_URL:");
    for command in commands {
        println!("  {command}");
    }
    println!();
    Ok(())
}
