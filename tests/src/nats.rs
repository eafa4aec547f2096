//! The JetStream suite: the relay, the JetStream source and the outbox's
//! JetStream destination, against the NATS server named by
//! `STATEFOLD_TEST_NATS_URL` and each backend, instantiated by
//! [`nats_suite!`](crate::nats_suite!) in `tests/nats_{sqlite,postgres,mysql}.rs`.
//!
//! Each test uses a stream and subject prefix of its own and deletes the
//! stream when done. Nothing sleeps to wait for something with a signal;
//! the one deliberate sleep outlives a stream's duplicate window.

use crate::db::{server_url, TestBackend, TestDb};
use crate::machines::Order;
use crate::streams::{all_ids, eventually, quick, seed, seen, setup, Projection};
use futures::StreamExt;
use statefold::effects::{Delivery, Destination, Message, Outgoing};
use statefold::remote::nats::async_nats::jetstream::{self, stream::Config, Context};
use statefold::remote::nats::{async_nats, Error, JetStreamDestination, Relay, Source, StreamConfig, POSITION};
use statefold::{Backoff, Fate, FaultPoint, Position, Start, Store};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The variable naming the NATS server.
pub const NATS_URL: &str = "STATEFOLD_TEST_NATS_URL";

/// Instantiates every case of the JetStream suite for one backend.
#[macro_export]
macro_rules! nats_suite {
    ($backend:ty, ignore if $unset:meta, $why:literal) => {
        $crate::nats_suite!(@cases $backend; $unset; $why;
            relay_publishes_the_log_in_order_and_a_source_applies_it_once,
            relay_under_fate_at_every_point_publishes_each_event_once_in_order,
            a_publish_lost_mid_pipeline_leaves_no_hole,
            relay_restarted_after_the_duplicate_window_duplicates_nothing,
            source_restarted_at_random_points_keeps_its_projection_exact,
            malformed_message_stops_the_source_naming_its_sequence,
            shards_as_subject_filters_split_the_events,
            a_stream_that_disagrees_is_a_typed_error,
            outbox_messages_are_published_once_per_message_id,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr($unset, ignore = $why)]
        async fn relay_processes_killed_at_random_lose_and_duplicate_nothing() {
            $crate::nats::relay_processes_killed_at_random_lose_and_duplicate_nothing::<$backend>(env!("CARGO_BIN_EXE_nats_relay")).await;
        }
    };
    (@cases $backend:ty; $unset:meta; $why:literal; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr($unset, ignore = $why)]
        async fn $case() {
            $crate::nats::$case::<$backend>().await;
        }
    )*};
}

/// A stream and subject prefix of one test, on the test server.
pub struct Js {
    /// The connection.
    pub client: async_nats::Client,
    /// Its JetStream context.
    pub js: Context,
    /// The stream's name.
    pub stream: String,
    /// The subjects' prefix.
    pub prefix: String,
}

impl Js {
    /// Connects; `None` when the test skips (no URL, outside CI).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn new(test: &str) -> Option<Self> {
        let url = server_url(NATS_URL)?;
        let client = async_nats::connect(&url).await.unwrap_or_else(|e| panic!("NATS at {url}: {e}"));
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tag: String = test.chars().filter(char::is_ascii_alphanumeric).take(20).collect();
        let unique = format!("{tag}_{}_{nanos}", std::process::id());
        Some(Self {
            js: jetstream::new(client.clone()),
            client,
            stream: format!("SF_{}", unique.to_ascii_uppercase()),
            prefix: format!("sf_{unique}"),
        })
    }

    /// The stream's configuration.
    pub fn config(&self) -> StreamConfig {
        StreamConfig::new(&self.stream).prefix(&self.prefix)
    }

    /// The positions of the stream's messages, in stream order.
    ///
    /// # Panics
    /// When the stream cannot be read or a message has no position.
    pub async fn positions(&self) -> Vec<Position> {
        let stream = self.js.get_stream(&self.stream).await.expect("the stream exists");
        let info = stream.get_info().await.expect("stream info");
        let mut positions = Vec::new();
        for sequence in info.state.first_sequence..=info.state.last_sequence {
            if sequence == 0 {
                continue;
            }
            let message = stream.get_raw_message(sequence).await.expect("a stored message");
            let header = message.headers.get(POSITION).expect("a position header");
            let text: &str = header.as_ref();
            positions.push(text.parse().expect("a position"));
        }
        positions
    }

    /// Deletes the stream (and `others`).
    pub async fn delete(&self, others: &[&str]) {
        for name in std::iter::once(self.stream.as_str()).chain(others.iter().copied()) {
            let _ = self.js.delete_stream(name).await;
        }
    }
}

/// The log's positions in stream order (`n` events).
async fn log<B: TestBackend>(store: &Store<Order, B>, n: usize) -> Vec<Position> {
    store.stream(Start::Beginning).take(n).map(|e| e.expect("an event").position).collect().await
}

async fn both<B: TestBackend>(test: &str) -> Option<(TestDb<B>, Store<Order, B>, Js)> {
    let (db, store) = setup::<B>(test).await?;
    let js = Js::new(test).await?;
    Some((db, store, js))
}

fn quick_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(5), Duration::from_millis(50))
}

fn relay<B: TestBackend>(store: &Store<Order, B>, js: &Js) -> Relay<Order, B> {
    Relay::new(store, js.client.clone(), js.config())
        .stream_options(quick())
        .backoff(quick_backoff())
        .lease_ttl(Duration::from_millis(600))
}

fn source<B: TestBackend>(store: &Store<Order, B>, js: &Js, durable: &str) -> Source<Order, B> {
    Source::new(store, js.client.clone(), &js.stream, durable)
        .backoff(quick_backoff())
        .lease_ttl(Duration::from_millis(600))
}

/// Ids, each once, in order: what an exact projection holds.
fn exact(ids: &[i64]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

/// Given a log of 30 events, when relayed and consumed, then JetStream holds
/// them in log order and the source's projection holds each once; a second
/// pass does nothing.
pub async fn relay_publishes_the_log_in_order_and_a_source_applies_it_once<B: TestBackend>() {
    let Some((db, store, js)) = both::<B>("relay_in_order").await else { return };
    let n = seed(&store, 20).await;
    let relay = relay(&store, &js);
    assert_eq!(relay.catch_up().await.expect("relayed"), n as u64);
    assert_eq!(js.positions().await, log(&store, n).await);
    assert_eq!(relay.position().await.expect("cursor"), *log(&store, n).await.last().unwrap());
    let source = source(&store, &js, "once");
    assert_eq!(source.catch_up(&mut Projection::new("once")).await.expect("consumed"), n as u64);
    assert_eq!(seen(&db, "once").await, all_ids(&db).await);
    assert_eq!(relay.catch_up().await.expect("nothing new"), 0);
    assert_eq!(source.catch_up(&mut Projection::new("once")).await.expect("nothing new"), 0);
    assert_eq!(js.positions().await.len(), n);
    js.delete(&[]).await;
}

/// Given fate at every relay point (lost publishes, crashes after an
/// acknowledgement, database trips), when the relay runs while orders are
/// written, then JetStream holds every event once, in log order.
pub async fn relay_under_fate_at_every_point_publishes_each_event_once_in_order<B: TestBackend>() {
    let Some((db, store, js)) = both::<B>("relay_fate").await else { return };
    let points = [FaultPoint::BeforePublish, FaultPoint::AfterPublishAck, FaultPoint::BeforeConsumerQuery];
    let faulty = store.clone().with_fate(Fate::new(0.08, 11).at(&points));
    let relay = relay(&faulty, &js).window(16);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move { relay.run(async { drop(stopped.await) }).await });
    let n = seed(&store, 60).await;
    eventually("every event is in JetStream", || async { js.positions().await.len() >= n }).await;
    stop.send(()).expect("relay running");
    running.await.expect("no panic").expect("relay ran");
    assert!(faulty.fate().expect("fate").injected() > 0, "no fault was injected");
    assert_eq!(js.positions().await, log(&store, n).await);
    let mut projection = Projection::new("fate");
    source(&store, &js, "fate").catch_up(&mut projection).await.expect("consumed");
    assert_eq!(seen(&db, "fate").await, all_ids(&db).await);
    js.delete(&[]).await;
}

/// Given publishes lost in the middle of a 32-deep pipeline while later ones
/// go out, then JetStream refuses those later ones and the stream has no hole.
pub async fn a_publish_lost_mid_pipeline_leaves_no_hole<B: TestBackend>() {
    let Some((_db, store, js)) = both::<B>("relay_hole").await else { return };
    let n = seed(&store, 100).await;
    let faulty = store.clone().with_fate(Fate::new(0.03, 5).at(&[FaultPoint::BeforePublish]));
    let relay = relay(&faulty, &js).window(32);
    relay.catch_up().await.expect("relayed");
    let injected = faulty.fate().expect("fate").injected();
    assert!(injected > 0, "no publish was lost");
    assert_eq!(js.positions().await, log(&store, n).await, "{injected} publishes lost");
    js.delete(&[]).await;
}

/// Given a stream whose duplicate window is one second and a relay whose
/// cursor is lost behind the stream (a crash before its save), when it
/// restarts after the window, then it publishes nothing again; and a copy
/// published anyway under a new sequence is skipped by the source.
pub async fn relay_restarted_after_the_duplicate_window_duplicates_nothing<B: TestBackend>() {
    let Some((db, store, js)) = both::<B>("relay_window").await else { return };
    let n = seed(&store, 10).await;
    let config = js.config().duplicate_window(Duration::from_secs(1));
    let relay = Relay::new(&store, js.client.clone(), config.clone()).stream_options(quick());
    relay.catch_up().await.expect("relayed");
    let sql = "DELETE FROM statefold_cursors WHERE consumer = 'nats-relay:".to_owned() + &js.stream + "'";
    db.execute(&sql, vec![]).await;
    // The window must pass for JetStream to forget the ids: nothing signals that.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(relay.catch_up().await.expect("relayed"), 0);
    assert_eq!(js.positions().await, log(&store, n).await);
    let mut projection = Projection::new("window");
    let source = source(&store, &js, "window");
    source.catch_up(&mut projection).await.expect("consumed");
    // A copy of the last event under a new sequence, as an older relay
    // restarting after the window would publish.
    let stream = js.js.get_stream(&js.stream).await.expect("stream");
    let last = stream.get_info().await.expect("info").state.last_sequence;
    let copy = stream.get_raw_message(last).await.expect("last message");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(POSITION, copy.headers.get(POSITION).expect("a position").clone());
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        copy.headers.get(async_nats::header::NATS_MESSAGE_ID).expect("an id").clone(),
    );
    js.js.publish_with_headers(copy.subject.clone(), headers, copy.payload).await.expect("sent").await.expect("stored");
    assert_eq!(js.positions().await.len(), n + 1);
    let mut more = seed(&store, 2).await;
    more += n;
    // The relay's stream now ends with a copy: it goes on after it.
    assert_eq!(relay.catch_up().await.expect("relayed"), (more - n) as u64);
    source.catch_up(&mut projection).await.expect("consumed");
    assert_eq!(seen(&db, "window").await, all_ids(&db).await);
    js.delete(&[]).await;
}

/// Given relay processes killed with SIGKILL at random moments while
/// orders are written, then JetStream holds every event once in log order,
/// and a source applies each once. `relay_bin` is the `nats_relay` binary.
pub async fn relay_processes_killed_at_random_lose_and_duplicate_nothing<B: TestBackend>(relay_bin: &str) {
    let Some((db, store, js)) = both::<B>("relay_kill").await else { return };
    relay(&store, &js).ensure_stream().await.expect("stream created");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { seed(&store, 150).await })
    };
    let mut dice = 0x9e37_79b9_u64 ^ u64::from(std::process::id());
    for _ in 0..6 {
        let mut child = std::process::Command::new(relay_bin)
            .args([B::NAME, &db.url, &std::env::var(NATS_URL).unwrap_or_default(), &js.stream, &js.prefix])
            .spawn()
            .expect("the relay starts");
        dice ^= dice << 13;
        dice ^= dice >> 7;
        dice ^= dice << 17;
        tokio::time::sleep(Duration::from_millis(100 + dice % 400)).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    let n = writer.await.expect("writer");
    // The killed relays' leases expire; this one then finishes the log.
    relay(&store, &js).catch_up().await.expect("relayed");
    assert_eq!(js.positions().await, log(&store, n).await);
    let mut projection = Projection::new("killed");
    source(&store, &js, "killed").catch_up(&mut projection).await.expect("consumed");
    assert_eq!(seen(&db, "killed").await, all_ids(&db).await);
    js.delete(&[]).await;
}

/// Given a source stopped abruptly at random points (its task dropped
/// mid-handler, its lease left to expire) and faults before its cursor
/// saves, then its projection holds every event exactly once.
pub async fn source_restarted_at_random_points_keeps_its_projection_exact<B: TestBackend>() {
    let Some((db, store, js)) = both::<B>("source_restart").await else { return };
    let n = seed(&store, 40).await;
    relay(&store, &js).catch_up().await.expect("relayed");
    let faulty = store.clone().with_fate(Fate::new(0.1, 3).at(&[FaultPoint::BeforeCursorSave]));
    let mut dice = 0x2545_f491_u64;
    for _ in 0..8 {
        let source = source(&faulty, &js, "restarts").lease_ttl(Duration::from_millis(200));
        let mut projection = Projection::new("restarts");
        let running = tokio::spawn(async move { source.run(&mut projection, std::future::pending()).await });
        dice ^= dice << 13;
        dice ^= dice >> 7;
        dice ^= dice << 17;
        tokio::time::sleep(Duration::from_millis(20 + dice % 150)).await;
        running.abort();
        assert!(running.await.is_err_and(|e| e.is_cancelled()), "the source ended by itself");
    }
    source(&faulty, &js, "restarts").catch_up(&mut Projection::new("restarts")).await.expect("consumed");
    let ids = seen(&db, "restarts").await;
    assert!(exact(&ids), "an event applied twice: {ids:?}");
    assert_eq!(ids, all_ids(&db).await);
    assert_eq!(ids.len(), n);
    js.delete(&[]).await;
}

/// Given a message on the stream's subjects that is no relayed event, then
/// the source stops with an error naming its sequence, having handled what
/// came before; with a dead-letter subject it moves it there and goes on.
pub async fn malformed_message_stops_the_source_naming_its_sequence<B: TestBackend>() {
    let Some((db, store, js)) = both::<B>("malformed").await else { return };
    let n = seed(&store, 3).await;
    relay(&store, &js).catch_up().await.expect("relayed");
    let subject = format!("{}.orders.paid", js.prefix);
    js.js.publish(subject, "not an event".into()).await.expect("sent").await.expect("stored");
    let error = source(&store, &js, "strict").catch_up(&mut Projection::new("strict")).await.expect_err("stops");
    assert!(matches!(&error, Error::Malformed { sequence, .. } if *sequence == n as u64 + 1), "{error}");
    assert!(error.to_string().contains(&format!("sequence {}", n + 1)), "{error}");
    assert_eq!(seen(&db, "strict").await.len(), n);
    // Stopped again at the same message: nothing was skipped.
    let again = source(&store, &js, "strict").catch_up(&mut Projection::new("strict")).await;
    assert!(matches!(again, Err(Error::Malformed { .. })));

    let dead = format!("{}_DEAD", js.stream);
    let dead_subject = format!("{}dead.letters", js.prefix);
    js.js
        .create_stream(Config { name: dead.clone(), subjects: vec![dead_subject.clone()], ..Config::default() })
        .await
        .expect("dead-letter stream");
    let lenient = source(&store, &js, "lenient").dead_letter_subject(&dead_subject);
    assert_eq!(lenient.catch_up(&mut Projection::new("lenient")).await.expect("goes on"), n as u64);
    assert_eq!(seen(&db, "lenient").await.len(), n);
    let letters = js.js.get_stream(&dead).await.expect("dead letters").get_info().await.expect("info");
    assert_eq!(letters.state.messages, 1);
    js.delete(&[&dead]).await;
}

/// Given a relay with two shards in its subjects, then a source per shard
/// filter together handle every event once, neither twice.
pub async fn shards_as_subject_filters_split_the_events<B: TestBackend>() {
    let Some((db, store, js)) = both::<B>("shards").await else { return };
    seed(&store, 30).await;
    let config = js.config().shards(2);
    Relay::new(&store, js.client.clone(), config.clone()).catch_up().await.expect("relayed");
    let mut ids = Vec::new();
    for (index, name) in [(0, "shard0"), (1, "shard1")] {
        let shard = source(&store, &js, name).filter(config.shard_filter::<Order>(index));
        let handled = shard.catch_up(&mut Projection::new(name)).await.expect("consumed");
        assert!(handled > 0, "shard {index} is empty");
        ids.extend(seen(&db, name).await);
    }
    ids.sort_unstable();
    assert_eq!(ids, all_ids(&db).await);
    js.delete(&[]).await;
}

/// Given a stream that exists with another duplicate window, then the
/// relay refuses to start with an error naming it; a bad name is refused
/// before anything is sent.
pub async fn a_stream_that_disagrees_is_a_typed_error<B: TestBackend>() {
    let Some((_db, store, js)) = both::<B>("mismatch").await else { return };
    Relay::new(&store, js.client.clone(), js.config()).ensure_stream().await.expect("created");
    let other = js.config().duplicate_window(Duration::from_secs(5));
    let error = Relay::new(&store, js.client.clone(), other).catch_up().await.expect_err("refused");
    assert!(matches!(&error, Error::StreamMismatch { field: "duplicate window", .. }), "{error}");
    let other = js.config().prefix("elsewhere");
    let error = Relay::new(&store, js.client.clone(), other).ensure_stream().await.expect_err("refused");
    assert!(matches!(&error, Error::StreamMismatch { field: "subjects", .. }), "{error}");
    let bad = StreamConfig::new("has space");
    let error = Relay::new(&store, js.client.clone(), bad).ensure_stream().await.expect_err("refused");
    assert!(matches!(&error, Error::InvalidName { .. }), "{error}");
    assert_eq!(js.positions().await, Vec::<Position>::new());
    js.delete(&[]).await;
}

/// Given an outbox message sent twice with one message id (a dispatcher
/// that died before marking it sent), then JetStream keeps it once.
pub async fn outbox_messages_are_published_once_per_message_id<B: TestBackend>() {
    let Some(js) = Js::new("outbox").await else { return };
    js.js
        .create_stream(Config {
            name: js.stream.clone(),
            subjects: vec![format!("{}.>", js.prefix)],
            ..Config::default()
        })
        .await
        .expect("stream");
    let destination = JetStreamDestination::new(js.client.clone()).prefix(&js.prefix);
    let message = Message::new("orders.paid", "7", &serde_json::json!({ "order": 7 }));
    let delivery = Delivery { id: "outbox-1".into(), attempt: 1, outgoing: Outgoing::Message(message) };
    destination.send(&delivery).await.expect("sent");
    destination.send(&Delivery { attempt: 2, ..delivery }).await.expect("sent again");
    let stream = js.js.get_stream(&js.stream).await.expect("stream");
    let info = stream.get_info().await.expect("info");
    assert_eq!(info.state.messages, 1);
    let stored = stream.get_raw_message(1).await.expect("stored");
    assert_eq!(stored.subject.as_str(), format!("{}.orders.paid", js.prefix));
    let id: &str = stored.headers.get(async_nats::header::NATS_MESSAGE_ID).expect("a message id").as_ref();
    assert_eq!(id, "outbox-1");
    let bad = Message::new("has space", "7", &serde_json::json!({}));
    let refused =
        destination.send(&Delivery { id: "outbox-2".into(), attempt: 1, outgoing: Outgoing::Message(bad) }).await;
    assert!(refused.is_err_and(|e| !e.is_retryable()));
    js.delete(&[]).await;
}
