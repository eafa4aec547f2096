//! Commands by id: N orders, each in separate calls, as a service receives
//! them. Three workloads:
//! - `commands`: place, pay, ship. The statefold side calls `Store::insert`,
//!   then `Store::transition(&id, Order::Paid { .. }, Metadata::new())` and
//!   the same for `Shipped`, keeping nothing but the id between calls;
//! - `insert`: place only (`Store::insert`);
//! - `if-match`: place, then pay and ship with `Store::transition_if_match`,
//!   the client sending the version it saw (its ETag) with the id.
//!
//! The hand-written side is in `hand.rs`.

use crate::child::{self, Run};
use crate::hand::{HandMySql, HandPg, HandSqlite, Orders};
use crate::scratch::Scratch;
use crate::OrderStatus;
use crate::{median, BoxError, Db, Options, Order, OrderPlaced, Side, RUN_LIMIT};
use statefold::{Backend, Metadata, MySql, Postgres, Row, Sqlite, Store};
use std::time::{Duration, Instant};

/// What each order goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// Place, pay and ship by id.
    Commands,
    /// Place only.
    Insert,
    /// Place, then pay and ship by id and the version the client saw.
    IfMatch,
}

impl Workload {
    /// Every workload, in the table's order.
    pub(crate) const ALL: [Self; 3] = [Self::Commands, Self::Insert, Self::IfMatch];

    /// The `--workload` value.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Self::Commands => "commands",
            Self::Insert => "insert",
            Self::IfMatch => "if-match",
        }
    }

    /// Parses a `--workload` value.
    pub(crate) fn parse(flag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.flag() == flag)
    }

    /// Commands per order.
    fn commands(self) -> usize {
        match self {
            Self::Insert => 1,
            Self::Commands | Self::IfMatch => 3,
        }
    }
}

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

    async fn pay_if(&self, id: i64, version: i64, payment_ref: String) -> Result<i64, BoxError> {
        let paid = Order::Paid { payment_ref };
        Ok(self.transition_if_match(&id, OrderStatus::Placed, version, paid, Metadata::new()).await?.row().version())
    }

    async fn ship_if(&self, id: i64, version: i64, tracking: String) -> Result<i64, BoxError> {
        let shipped = Order::Shipped { tracking };
        Ok(self.transition_if_match(&id, OrderStatus::Paid, version, shipped, Metadata::new()).await?.row().version())
    }
}

/// Order `n`, its commands in turn.
async fn order<O: Orders>(orders: &O, workload: Workload, n: usize) -> Result<i64, BoxError> {
    let id = orders.place(format!("customer {n}"), 4200).await?;
    let (paid, shipped) = match workload {
        Workload::Insert => return Ok(id),
        Workload::Commands => {
            let paid = orders.pay(id, format!("pay_{n}")).await?;
            (paid, orders.ship(id, format!("trk_{n}")).await?)
        }
        // The client knows the version each answer gave it (its ETag).
        Workload::IfMatch => {
            let paid = orders.pay_if(id, 1, format!("pay_{n}")).await?;
            (paid, orders.ship_if(id, paid, format!("trk_{n}")).await?)
        }
    };
    if (paid, shipped) != (2, 3) {
        return Err(format!("order {id} reached versions {paid} and {shipped}, not 2 and 3").into());
    }
    Ok(id)
}

/// Orders `first..last` split over `clients` concurrent clients; the elapsed time.
async fn drive<O: Orders>(
    orders: &O,
    workload: Workload,
    clients: usize,
    first: usize,
    last: usize,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let orders = orders.clone();
            tokio::spawn(async move {
                for n in (first + client..last).step_by(clients) {
                    order(&orders, workload, n).await?;
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
async fn timed<O: Orders>(orders: O, workload: Workload, clients: usize, count: usize) -> Result<f64, BoxError> {
    drive(&orders, workload, clients, count, count + 4 * clients).await?;
    let elapsed = tokio::time::timeout(RUN_LIMIT, drive(&orders, workload, clients, 0, count))
        .await
        .map_err(|_| format!("{count} orders took more than {RUN_LIMIT:?}"))??;
    Ok((count * workload.commands()) as f64 / elapsed.as_secs_f64())
}

/// Child mode: one side, once. Both sides open their pool with `Backend::connect`.
pub(crate) async fn side(
    db: Db,
    side: Side,
    url: &str,
    workload: Workload,
    clients: usize,
    orders: usize,
) -> Result<f64, BoxError> {
    let w = workload;
    match (db, side) {
        (Db::Sqlite, Side::Statefold) => timed(Store::<Order, Sqlite>::connect(url).await?, w, clients, orders).await,
        (Db::Postgres, Side::Statefold) => {
            timed(Store::<Order, Postgres>::connect(url).await?, w, clients, orders).await
        }
        (Db::MySql, Side::Statefold) => timed(Store::<Order, MySql>::connect(url).await?, w, clients, orders).await,
        (Db::Sqlite, Side::Hand) => timed(HandSqlite(Sqlite::connect(url).await?), w, clients, orders).await,
        (Db::Postgres, Side::Hand) => timed(HandPg(Postgres::connect(url).await?), w, clients, orders).await,
        (Db::MySql, Side::Hand) => timed(HandMySql(MySql::connect(url).await?), w, clients, orders).await,
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
    let summary = |events: Vec<statefold::Envelope<Order>>| {
        events.into_iter().map(|e| (e.event, e.from, e.to, e.version, e.metadata)).collect::<Vec<_>>()
    };
    for workload in Workload::ALL {
        let ours = order(&store, workload, 0).await?;
        let theirs = order(&hand, workload, 0).await?;
        let (ours, theirs) = (summary(store.history(&ours).await?), summary(store.history(&theirs).await?));
        if ours.len() != workload.commands() || ours != theirs {
            return Err(format!("the hand-written side writes other events:\n{ours:?}\n{theirs:?}").into());
        }
    }
    let audit = store.audit().await?;
    if !audit.is_clean() || audit.records != 2 * Workload::ALL.len() as u64 {
        return Err(format!("audit after one order per side: {audit:?}").into());
    }
    store.pool().close().await;
    Ok(())
}

/// The command that reproduces one row of the table.
fn command(db: Db, workload: Workload, clients: usize, options: &Options) -> String {
    format!(
        "cargo run --release -p statefold-bench -- --bench transitions --backend {} --workload {} --clients {clients} \
         --orders {} --rounds {}",
        db.flag(),
        workload.flag(),
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
        "commands by id, {} orders per run, median of {} rounds, each run in its own process\n\
         commands: place, then pay and ship by order id; insert: place only; \
         if-match: place, then pay and ship by id and the version seen\n",
        options.orders, options.rounds
    );
    println!("{:<32} {}", "backend, clients, workload", columns());
    let mut commands = Vec::new();
    for &db in &options.backends {
        let scratch = Scratch::create(db, options.server(db)?, "transitions").await?;
        let result = async {
            match db {
                Db::Sqlite => check_same_writes::<Sqlite, _>(&scratch.url, HandSqlite).await?,
                Db::Postgres => check_same_writes::<Postgres, _>(&scratch.url, HandPg).await?,
                Db::MySql => check_same_writes::<MySql, _>(&scratch.url, HandMySql).await?,
            }
            for (&clients, &workload) in
                options.clients.iter().flat_map(|c| options.workloads.iter().map(move |w| (c, w)))
            {
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                let rest = [
                    "--clients".to_owned(),
                    clients.to_string(),
                    "--orders".into(),
                    options.orders.to_string(),
                    "--workload".into(),
                    workload.flag().into(),
                ];
                for round in 0..options.rounds {
                    let sides =
                        if round % 2 == 0 { [Side::Statefold, Side::Hand] } else { [Side::Hand, Side::Statefold] };
                    for side in sides {
                        scratch.reset().await?;
                        let run = child::spawn(&child::args("transitions", db, side, &scratch.url, &rest)).await?;
                        if side == Side::Statefold { &mut ours } else { &mut theirs }.push(run);
                    }
                }
                report(&format!("{}, {clients}, {}", db.label(), workload.flag()), &ours, &theirs, 32);
                commands.push(command(db, workload, clients, options));
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
