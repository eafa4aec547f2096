//! Commit-to-consumer latency: how long after a write starts a stream
//! delivers its event, by how the stream learns of it.
//!
//! - in-process: the writer's store wakes streams of the same store;
//! - NOTIFY (PostgreSQL): writer and reader are separate stores on separate
//!   pools (as two processes would be); `NOTIFY` wakes the reader;
//! - polling: separate stores without notifications; the reader polls.
//!
//! Writes are sequential, `PAUSE` apart. Latency runs from just before the
//! write is sent to the delivery, so it includes the write's own round
//! trips; the write's median duration is shown to subtract.

use crate::scratch::Scratch;
use crate::{BoxError, Db, Options, Order, OrderPlaced};
use futures::StreamExt;
use statefold::{Backend, MySql, Postgres, Sqlite, Start, Store, StreamOptions};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Time between two writes.
const PAUSE: Duration = Duration::from_millis(2);
/// The longest wait for one delivery.
const WAIT_LIMIT: Duration = Duration::from_secs(30);
/// The polling interval of the polling mode.
const POLL: Duration = Duration::from_millis(100);

/// The value at rank `p` (0 to 1) of sorted durations.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A duration in milliseconds.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes `samples` events through `writer` while `reader` streams them.
async fn measure<B: Backend>(
    backend: &str,
    mode: &str,
    writer: Store<Order, B>,
    reader: &Store<Order, B>,
    options: StreamOptions,
    samples: usize,
) -> Result<(), BoxError> {
    let head = reader.head().await?;
    let mut stream = reader.stream_with(Start::After(head), options);
    // The first event opens the stream (and its listener) before timing starts.
    let warm = writer.insert(OrderPlaced { customer: "warm-up".into(), amount_cents: 0 }).await?;
    let first = tokio::time::timeout(WAIT_LIMIT, stream.next())
        .await
        .map_err(|_| format!("no event within {WAIT_LIMIT:?}"))?
        .ok_or("the stream ended")??;
    assert_eq!(first.record_id, *warm.id());
    let (sender, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let consumer = tokio::spawn(async move {
        while let Some(envelope) = stream.next().await {
            let Ok(envelope) = envelope else { break };
            if sender.send((envelope.record_id, Instant::now())).is_err() {
                break;
            }
        }
    });
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
        let (id, at) = tokio::time::timeout(WAIT_LIMIT, delivered.recv())
            .await
            .map_err(|_| format!("no event within {WAIT_LIMIT:?}"))?
            .ok_or("the stream ended")?;
        let start = started.get(&id).ok_or("an event nobody wrote")?;
        latencies.push(at.duration_since(*start));
    }
    consumer.abort();
    latencies.sort();
    writes.sort();
    println!(
        "{backend:<12} {mode:<22} {:>9.2} {:>9.2} {:>12.2}",
        millis(percentile(&latencies, 0.5)),
        millis(percentile(&latencies, 0.99)),
        millis(percentile(&writes, 0.5))
    );
    Ok(())
}

pub(crate) async fn run(options: &Options) -> Result<(), BoxError> {
    println!("commit-to-consumer latency over {} sequential writes, {PAUSE:?} apart (milliseconds)\n", options.samples);
    println!("{:<12} {:<22} {:>9} {:>9} {:>12}", "backend", "wake-up", "p50", "p99", "write p50");
    let mut commands = Vec::new();
    for &db in &options.backends {
        let scratch = Scratch::create(db, options.server(db)?, "latency").await?;
        let result = match db {
            Db::Sqlite => modes::<Sqlite>(db, &scratch.url, options.samples).await,
            Db::Postgres => modes::<Postgres>(db, &scratch.url, options.samples).await,
            Db::MySql => modes::<MySql>(db, &scratch.url, options.samples).await,
        };
        scratch.remove().await?;
        result?;
        commands.push(format!(
            "cargo run --release -p statefold-bench -- --bench latency --backend {} --samples {}",
            db.flag(),
            options.samples
        ));
    }
    println!("\neach backend, with the server URLs in STATEFOLD_TEST_POSTGRES_URL / STATEFOLD_TEST_MYSQL_URL:");
    for command in commands {
        println!("  {command}");
    }
    println!();
    Ok(())
}

/// Every wake-up the backend has: in-process, `NOTIFY` where the database
/// has it, and polling. Each "other process" is a store on a pool of its own.
async fn modes<B: Backend>(db: Db, url: &str, samples: usize) -> Result<(), BoxError> {
    let polling = StreamOptions::default().poll_interval(POLL);
    let no_poll = StreamOptions::default().poll_interval(Duration::from_secs(3600));
    let store = Store::<Order, B>::connect(url).await?;
    measure(db.label(), "in-process", store.clone(), &store, no_poll.clone(), samples).await?;
    if db == Db::Postgres {
        let notifying = Store::<Order, B>::connect(url).await?.with_notifications(true);
        let listening = no_poll.listen(true);
        measure(db.label(), "NOTIFY (other process)", notifying, &store, listening, samples).await?;
    }
    let silent = Store::<Order, B>::connect(url).await?;
    measure(db.label(), "polling 100 ms", silent, &store, polling, samples).await?;
    store.pool().close().await;
    Ok(())
}
