//! Commit-to-consumer latency: how long after a write starts a stream
//! delivers its event, by how the stream learns of it.
//!
//! - in-process: the writer's store wakes streams of the same store;
//! - NOTIFY: writer and reader are separate stores on separate pools (as two
//!   processes would be); PostgreSQL `NOTIFY` wakes the reader;
//! - polling: separate stores without notifications; the reader polls.
//!
//! Writes are sequential, `PAUSE` apart. Latency runs from just before the
//! write is sent to the delivery, so it includes the write's own round
//! trips; the write's median duration is shown to subtract.

use crate::{BoxError, Options, Order, OrderPlaced};
use futures::StreamExt;
use statefold::{Backend, Postgres, Sqlite, Start, Store, StreamOptions};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Time between two writes.
const PAUSE: Duration = Duration::from_millis(2);
/// The polling interval of the polling mode.
const POLL: Duration = Duration::from_millis(100);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn millis(d: Duration) -> f64 {
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
    let first = stream.next().await.ok_or("the stream ended")??;
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
        let (id, at) = delivered.recv().await.ok_or("the stream ended")?;
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

pub(crate) async fn run(options: &Options, postgres_url: Option<&str>) -> Result<(), BoxError> {
    println!("commit-to-consumer latency over {} sequential writes, {PAUSE:?} apart (milliseconds)\n", options.samples);
    println!("{:<12} {:<22} {:>9} {:>9} {:>12}", "backend", "wake-up", "p50", "p99", "write p50");
    let polling = StreamOptions::default().poll_interval(POLL);
    let no_poll = StreamOptions::default().poll_interval(Duration::from_secs(3600));
    if options.sqlite {
        let path = std::env::temp_dir().join(format!("statefold-bench-latency-{}.db", std::process::id()));
        let pool = Sqlite::connect(&format!("sqlite://{}", path.display())).await?;
        let result = async {
            let store = Store::<Order, Sqlite>::new(pool.clone());
            store.create_tables().await?;
            measure("SQLite", "in-process", store.clone(), &store, no_poll.clone(), options.samples).await?;
            let other = Store::<Order, Sqlite>::new(pool.clone());
            measure("SQLite", "polling 100 ms", other, &store, polling.clone(), options.samples).await?;
            Ok::<_, BoxError>(())
        }
        .await;
        pool.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            // A missing -wal or -shm file is fine.
            let _ = std::fs::remove_file(file);
        }
        result?;
    }
    if let Some(url) = postgres_url {
        let scratch = crate::catchup::Scratch::create(url, "latency").await?;
        let result = async {
            let store = Store::<Order, Postgres>::new(scratch.pool.clone());
            store.create_tables().await?;
            measure("PostgreSQL", "in-process", store.clone(), &store, no_poll.clone(), options.samples).await?;
            let notifying = Store::<Order, Postgres>::new(scratch.another_pool().await?).with_notifications(true);
            let listening = no_poll.clone().listen(true);
            measure("PostgreSQL", "NOTIFY (other process)", notifying, &store, listening, options.samples).await?;
            let silent = Store::<Order, Postgres>::new(scratch.another_pool().await?);
            measure("PostgreSQL", "polling 100 ms", silent, &store, polling.clone(), options.samples).await?;
            Ok::<_, BoxError>(())
        }
        .await;
        scratch.remove().await?;
        result?;
    }
    Ok(())
}
