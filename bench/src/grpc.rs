//! Streams between services over gRPC, against the local stream:
//!
//! - catch-up: a client reading the whole log from position 0 through a
//!   server in the same process (loopback, no TLS) against the local
//!   stream's events/s; each run is a process of its own;
//! - latency: from just before a write to the call of a remote consumer's
//!   handler (`Consumer::with_source` over gRPC, into a SQLite database of
//!   its own, where each event's cursor commits before the next event), and
//!   to a remote stream's item (`Client::stream`, no database on the
//!   client); the server woken in-process (its store is the writer's) or,
//!   on PostgreSQL, by `NOTIFY` from a writer on a pool of its own.

use crate::catchup::seed;
use crate::child::{self, Run};
use crate::scratch::Scratch;
use crate::{median, BoxError, Db, Options, Order, OrderPlaced, Side};
use futures::StreamExt;
use statefold::remote::grpc::{Client, Grant, Server, Tokens};
use statefold::{Backend, Consumer, Envelope, Handler, HandlerError, Machine, MySql, Postgres, Sqlite};
use statefold::{Start, Store, StreamOptions, Tx};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const TOKEN: &str = "bench-token";
/// Time between two writes of the latency run.
const PAUSE: Duration = Duration::from_millis(2);
/// The longest wait for one delivery.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Serves `store` on a free loopback port until the process ends; its endpoint.
async fn serve<B: Backend>(store: &Store<Order, B>, options: StreamOptions, batch: u32) -> Result<String, BoxError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let tokens = Tokens::new().token(TOKEN, Grant::new("bench").machine(Order::DEF.name));
    let server = Server::new(tokens).register_as(Order::DEF.name, store, options).batch_size(batch);
    tokio::spawn(server.serve(listener, std::future::pending()));
    Ok(endpoint)
}

/// Child mode: reads every event over gRPC from a server in this process.
pub(crate) async fn through_grpc<B: Backend>(url: &str, events: usize, batch: u32) -> Result<usize, BoxError> {
    let store = Store::<Order, B>::connect(url).await?;
    let endpoint = serve(&store, StreamOptions::default(), batch).await?;
    let client = Client::builder(endpoint).token(TOKEN).batch_size(batch).build()?;
    let mut stream = client.stream::<Order>(Start::Beginning).take(events);
    let mut read = 0;
    while let Some(envelope) = stream.next().await {
        envelope?;
        read += 1;
    }
    Ok(read)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Tells when each event reached the handler.
struct Clock(mpsc::UnboundedSender<(i64, Instant)>);

impl Handler<Order, Sqlite> for Clock {
    async fn handle(&mut self, _: &mut Tx<'static, Sqlite>, event: &Envelope<Order>) -> Result<(), HandlerError> {
        let _ = self.0.send((event.record_id, Instant::now()));
        Ok(())
    }
}

/// Writes `samples` events through `writer` while, over a server of
/// `served`, a remote consumer handles them into a SQLite database of its
/// own (`consumer`), or a remote stream delivers them.
#[allow(clippy::too_many_arguments)]
async fn latency<B: Backend>(
    backend: &str,
    mode: &str,
    consumer: bool,
    writer: Store<Order, B>,
    served: &Store<Order, B>,
    options: StreamOptions,
    samples: usize,
) -> Result<(), BoxError> {
    let endpoint = serve(served, options, 500).await?;
    let local_path = std::env::temp_dir().join(format!("sf_bench_grpc_local_{}.db", std::process::id()));
    let local = Store::<Order, Sqlite>::connect(&format!("sqlite://{}", local_path.display())).await?;
    local.create_support_tables().await?;
    let client = Client::builder(endpoint).token(TOKEN).build()?;
    let (sender, mut handled) = mpsc::unbounded_channel();
    let head = served.head().await?;
    let warm = writer.insert(OrderPlaced { customer: "warm-up".into(), amount_cents: 0 }).await?;
    let run = if consumer {
        // From the start: the warm-up event is the last before timing.
        let consumer = Consumer::with_source(&local, "latency", client.source::<Order>());
        tokio::spawn(async move { consumer.run(&mut Clock(sender), std::future::pending()).await.map(drop) })
    } else {
        let mut stream = client.stream::<Order>(Start::After(head));
        tokio::spawn(async move {
            while let Some(envelope) = stream.next().await {
                if sender.send((envelope?.record_id, Instant::now())).is_err() {
                    break;
                }
            }
            Ok(())
        })
    };
    loop {
        let (id, _) = tokio::time::timeout(WAIT_LIMIT, handled.recv())
            .await
            .map_err(|_| format!("no event within {WAIT_LIMIT:?}"))?
            .ok_or("the consumer stopped")?;
        if id == *warm.id() {
            break;
        }
    }
    let (mut started, mut writes) = (HashMap::new(), Vec::with_capacity(samples));
    for n in 0..samples {
        let start = Instant::now();
        let record = writer.insert(OrderPlaced { customer: format!("customer {n}"), amount_cents: 1 }).await?;
        writes.push(start.elapsed());
        started.insert(*record.id(), start);
        tokio::time::sleep(PAUSE).await;
    }
    let mut latencies = Vec::with_capacity(samples);
    while latencies.len() < samples {
        let (id, at) = tokio::time::timeout(WAIT_LIMIT, handled.recv())
            .await
            .map_err(|_| format!("no event within {WAIT_LIMIT:?}"))?
            .ok_or("the consumer stopped")?;
        let start = started.get(&id).ok_or("an event nobody wrote")?;
        latencies.push(at.duration_since(*start));
    }
    run.abort();
    local.pool().close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", local_path.display()));
    }
    latencies.sort();
    writes.sort();
    let to = if consumer { "consumer's handler" } else { "stream" };
    println!(
        "{backend:<12} {to:<19} {mode:<26} {:>9.2} {:>9.2} {:>12.2}",
        millis(percentile(&latencies, 0.5)),
        millis(percentile(&latencies, 0.99)),
        millis(percentile(&writes, 0.5))
    );
    Ok(())
}

/// The server woken in-process, and on PostgreSQL by `NOTIFY` from another
/// pool; each mode on a log of its own (a consumer starts from its start).
/// The server polls at the default interval (1 s), which also bounds how
/// long it waits before looking again behind a running transaction.
async fn latencies<B: Backend>(db: Db, server: Option<&str>, samples: usize) -> Result<(), BoxError> {
    for consumer in [false, true] {
        for notify in [false, true] {
            if notify && db != Db::Postgres {
                continue;
            }
            let scratch = Scratch::create(db, server, "grpc_latency").await?;
            let result = async {
                let store = Store::<Order, B>::connect(&scratch.url).await?;
                if notify {
                    let notifying = Store::<Order, B>::connect(&scratch.url).await?.with_notifications(true);
                    let listening = StreamOptions::default().listen(true);
                    let mode = "NOTIFY (writer elsewhere)";
                    latency(db.label(), mode, consumer, notifying, &store, listening, samples).await?;
                } else {
                    let options = StreamOptions::default();
                    latency(db.label(), "in-process", consumer, store.clone(), &store, options, samples).await?;
                }
                store.pool().close().await;
                Ok::<_, BoxError>(())
            }
            .await;
            scratch.remove().await?;
            result?;
        }
    }
    Ok(())
}

pub(crate) async fn run(options: &Options) -> Result<(), BoxError> {
    println!(
        "catch-up over gRPC (client and server in one process, loopback) against the local stream: \
         {} events from position 0, batches of {}, median of {} rounds, each run in its own process\n",
        options.events, options.batch, options.rounds
    );
    println!(
        "{:<12} {:>10} {:>10} {:>6} {:>6} {:>11} {:>9} {:>9}",
        "backend", "gRPC", "local", "ratio", "paired", "range", "gRPC MiB", "local MiB"
    );
    let mut commands = Vec::new();
    for &db in &options.backends {
        let scratch = Scratch::create(db, options.server(db)?, "grpc").await?;
        let result = async {
            seed(db, &scratch.url, options.events).await?;
            let rest = ["--events".to_owned(), options.events.to_string(), "--batch".into(), options.batch.to_string()];
            let args = |side| child::args("catchup", db, side, &scratch.url, &rest);
            child::spawn(&args(Side::Hand)).await?;
            let (mut remote, mut local): (Vec<Run>, Vec<Run>) = Default::default();
            for round in 0..options.rounds {
                let sides = if round % 2 == 0 { [Side::Grpc, Side::Statefold] } else { [Side::Statefold, Side::Grpc] };
                for side in sides {
                    let run = child::spawn(&args(side)).await?;
                    if side == Side::Grpc { &mut remote } else { &mut local }.push(run);
                }
            }
            let rate = |runs: &[Run]| median(runs.iter().map(|r| r.rate).collect());
            let peak = |runs: &[Run]| runs.iter().map(|r| r.peak_mib).fold(0.0, f64::max);
            let ratios: Vec<f64> = remote.iter().zip(&local).map(|(a, b)| a.rate / b.rate).collect();
            let (low, high) = ratios.iter().fold((f64::MAX, 0.0_f64), |(l, h), r| (l.min(*r), h.max(*r)));
            println!(
                "{:<12} {:>10.0} {:>10.0} {:>6.2} {:>6.2} {:>11} {:>9.1} {:>9.1}",
                db.label(),
                rate(&remote),
                rate(&local),
                rate(&remote) / rate(&local),
                median(ratios),
                format!("{low:.2}-{high:.2}"),
                peak(&remote),
                peak(&local)
            );
            Ok::<_, BoxError>(())
        }
        .await;
        scratch.remove().await?;
        result?;
        commands.push(format!(
            "cargo run --release -p statefold-bench -- --bench grpc --backend {} --events {} --batch {} --rounds {} --samples {}",
            db.flag(),
            options.events,
            options.batch,
            options.rounds,
            options.samples
        ));
    }
    println!(
        "\ncommit-to-remote-handler latency over {} sequential writes, {PAUSE:?} apart (milliseconds)\n",
        options.samples
    );
    println!(
        "{:<12} {:<19} {:<26} {:>9} {:>9} {:>12}",
        "backend", "delivered to", "server woken by", "p50", "p99", "write p50"
    );
    for &db in &options.backends {
        let server = options.server(db)?;
        match db {
            Db::Sqlite => latencies::<Sqlite>(db, server, options.samples).await?,
            Db::Postgres => latencies::<Postgres>(db, server, options.samples).await?,
            Db::MySql => latencies::<MySql>(db, server, options.samples).await?,
        }
    }
    println!("\neach backend, with the server URLs in STATEFOLD_TEST_POSTGRES_URL / STATEFOLD_TEST_MYSQL_URL:");
    for command in commands {
        println!("  {command}");
    }
    println!();
    Ok(())
}
