//! The JetStream relay against a plain `async-nats` publish loop, and
//! commit-to-handler latency through JetStream.
//!
//! - Throughput: a log of `--messages` events is relayed to a fresh stream
//!   by [`Relay::catch_up`] (which reads the log from the database, then
//!   publishes with 256 in flight, acknowledgements awaited in order, and
//!   saves its cursor); the plain loop publishes the same
//!   bodies, already in memory, with the same window and a `Nats-Msg-Id`
//!   each, to another fresh stream. Rounds alternate which goes first; the
//!   figure is the median.
//! - Latency: a relay and a [`Source`] run; `--samples` orders are written
//!   one after another, `PAUSE` apart; latency runs from just before the
//!   write to the handler's call (in the source's transaction).

use crate::scratch::Scratch;
use crate::{median, BoxError, Db, Options, Order, OrderPlaced};
use async_nats::jetstream::{self, stream::Config, Context};
use statefold::remote::nats::{async_nats, Relay, Source, StreamConfig};
use statefold::{Backend, Envelope, Handler, HandlerError, MySql, Postgres, Sqlite, Store, StreamOptions, Tx};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Publishes in flight, on both sides.
const WINDOW: usize = 256;
/// Time between two writes of the latency run.
const PAUSE: Duration = Duration::from_millis(2);
/// The longest wait for one delivery.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) async fn run(options: &Options) -> Result<(), BoxError> {
    let url = options
        .nats_url
        .as_deref()
        .ok_or("the relay benchmark needs NATS: pass --nats-url or set STATEFOLD_TEST_NATS_URL")?;
    let client = async_nats::connect(url).await?;
    println!(
        "JetStream relay: {} events, {WINDOW} publishes in flight, median of {} rounds; latency over {} writes, {PAUSE:?} apart\n",
        options.messages, options.rounds, options.samples
    );
    println!(
        "{:<12} {:>14} {:>14} {:>7} {:>10} {:>10}",
        "backend", "relay ev/s", "plain ev/s", "ratio", "e2e p50", "e2e p99"
    );
    let mut commands = Vec::new();
    for &db in &options.backends {
        let scratch = Scratch::create(db, options.server(db)?, "relay").await?;
        let result = match db {
            Db::Sqlite => measure::<Sqlite>(db, &scratch.url, &client, options).await,
            Db::Postgres => measure::<Postgres>(db, &scratch.url, &client, options).await,
            Db::MySql => measure::<MySql>(db, &scratch.url, &client, options).await,
        };
        scratch.remove().await?;
        result?;
        commands.push(format!(
            "cargo run --release -p statefold-bench -- --bench relay --backend {} --messages {} --rounds {} --samples {}",
            db.flag(),
            options.messages,
            options.rounds,
            options.samples
        ));
    }
    println!("\neach backend, with STATEFOLD_TEST_NATS_URL (and the server URLs) set:");
    for command in commands {
        println!("  {command}");
    }
    println!();
    Ok(())
}

async fn measure<B: Backend>(
    db: Db,
    url: &str,
    client: &async_nats::Client,
    options: &Options,
) -> Result<(), BoxError> {
    let store = Store::<Order, B>::connect(url).await?;
    store.create_support_tables().await?;
    let mut written = 0;
    while written < options.messages {
        let mut tx = store.begin().await?;
        for n in written..(written + 500).min(options.messages) {
            store.insert_in(&mut tx, OrderPlaced { customer: format!("customer {n}"), amount_cents: 1 }).await?;
        }
        tx.commit().await?;
        written = (written + 500).min(options.messages);
    }
    let js = jetstream::new(client.clone());
    let tag = std::process::id();
    let (mut relayed, mut plain) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let relay_name = format!("SF_BENCH_RELAY_{tag}_{round}");
        let plain_name = format!("SF_BENCH_PLAIN_{tag}_{round}");
        let body = sample_body(&store).await?;
        let relay_first = round % 2 == 0;
        for side in [relay_first, !relay_first] {
            if side {
                let config = StreamConfig::new(&relay_name).prefix(format!("sfbench{round}"));
                let relay = Relay::new(&store, client.clone(), config)
                    .window(WINDOW)
                    .stream_options(StreamOptions::default().batch_size(1_000));
                relay.ensure_stream().await?;
                let start = Instant::now();
                let n = relay.catch_up().await?;
                relayed.push(n as f64 / start.elapsed().as_secs_f64());
                js.delete_stream(&relay_name).await?;
            } else {
                plain.push(plain_loop(&js, &plain_name, &body, options.messages).await?);
                js.delete_stream(&plain_name).await?;
            }
        }
    }
    let (p50, p99) = latency(&store, client, options.samples).await?;
    let (relayed, plain) = (median(relayed), median(plain));
    println!(
        "{:<12} {:>14.0} {:>14.0} {:>7.2} {:>10.2} {:>10.2}",
        db.label(),
        relayed,
        plain,
        relayed / plain,
        millis(p50),
        millis(p99)
    );
    store.pool().close().await;
    Ok(())
}

/// A relayed body of the log's first event: what the plain loop sends.
async fn sample_body<B: Backend>(store: &Store<Order, B>) -> Result<Vec<u8>, BoxError> {
    let first = store.history(&1).await?.into_iter().next().ok_or("an empty log")?;
    Ok(serde_json::to_vec(&serde_json::json!({
        "position": first.position.to_string(),
        "record_id": 1,
        "kind": "placed",
        "version": first.version,
        "created_at": first.created_at,
        "payload": { "customer": "customer 0", "amount_cents": 1 },
        "metadata": {},
    }))?)
}

/// Publishes `n` copies of `body` with `WINDOW` in flight, acknowledgements
/// awaited in order; events per second.
async fn plain_loop(js: &Context, name: &str, body: &[u8], n: usize) -> Result<f64, BoxError> {
    let subject = format!("sfplain.{}", name.to_ascii_lowercase());
    js.create_stream(Config { name: name.to_owned(), subjects: vec![format!("{subject}.>")], ..Config::default() })
        .await?;
    let start = Instant::now();
    let mut pending = VecDeque::with_capacity(WINDOW);
    for i in 0..n {
        if pending.len() >= WINDOW {
            let ack: async_nats::jetstream::context::PublishAckFuture = pending.pop_front().ok_or("empty")?;
            ack.await?;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", i.to_string().as_str());
        pending.push_back(js.publish_with_headers(format!("{subject}.placed"), headers, body.to_vec().into()).await?);
    }
    for ack in pending {
        ack.await?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Records when each order reaches the handler.
struct Stamp(tokio::sync::mpsc::UnboundedSender<(i64, Instant)>);

impl<B: Backend> Handler<Order, B> for Stamp {
    async fn handle(&mut self, _: &mut Tx<'static, B>, event: &Envelope<Order>) -> Result<(), HandlerError> {
        let _ = self.0.send((event.record_id, Instant::now()));
        Ok(())
    }
}

/// Commit-to-handler latency through a running relay and source.
async fn latency<B: Backend>(
    store: &Store<Order, B>,
    client: &async_nats::Client,
    samples: usize,
) -> Result<(Duration, Duration), BoxError> {
    let name = format!("SF_BENCH_E2E_{}", std::process::id());
    let config = StreamConfig::new(&name).prefix("sfbenche2e");
    let relay = Relay::new(store, client.clone(), config).window(WINDOW);
    relay.ensure_stream().await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relaying = {
        let mut stopped = stopped.clone();
        tokio::spawn(async move { relay.run(async move { drop(stopped.changed().await) }).await })
    };
    let (sender, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let source = Source::new(store, client.clone(), &name, "latency");
    let consuming = {
        let mut stopped = stopped.clone();
        tokio::spawn(async move { source.run(&mut Stamp(sender), async move { drop(stopped.changed().await) }).await })
    };
    // The relayed backlog of the throughput rounds is not timed: drained first.
    let head = store.insert(OrderPlaced { customer: "warm-up".into(), amount_cents: 0 }).await?;
    loop {
        let (id, _) = tokio::time::timeout(WAIT_LIMIT, delivered.recv()).await?.ok_or("the source stopped")?;
        if id == *head.id() {
            break;
        }
    }
    let mut started = HashMap::new();
    for n in 0..samples {
        let start = Instant::now();
        let record = store.insert(OrderPlaced { customer: format!("sample {n}"), amount_cents: 1 }).await?;
        started.insert(*record.id(), start);
        tokio::time::sleep(PAUSE).await;
    }
    let mut latencies = Vec::with_capacity(samples);
    while latencies.len() < samples {
        let (id, at) = tokio::time::timeout(WAIT_LIMIT, delivered.recv()).await?.ok_or("the source stopped")?;
        if let Some(start) = started.get(&id) {
            latencies.push(at.duration_since(*start));
        }
    }
    stop.send(true)?;
    relaying.await??;
    consuming.await??;
    jetstream::new(client.clone()).delete_stream(&name).await?;
    latencies.sort();
    Ok((percentile(&latencies, 0.5), percentile(&latencies, 0.99)))
}
