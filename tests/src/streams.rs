//! The suite of streams and consumers, written once against [`TestBackend`]
//! and run on every backend by [`stream_suite!`](crate::stream_suite!).
//!
//! Nothing here sleeps to wait for something to happen: tests wait on the
//! stream itself, or poll a condition in a bounded loop. Writers do sleep
//! *inside* their transactions, on purpose: that is what makes commits
//! arrive out of id order.

use crate::db::{Arg, TestBackend, TestDb};
use crate::machines::{Order, OrderPaid, OrderPlaced, OrderStatus};
use futures::StreamExt;
use statefold::{
    Backoff, Consumer, Envelope, Error, Fate, FaultPoint, Handler, HandlerError, Position, Start, Store, StreamOptions,
    Tx,
};
use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Instantiates every case of the stream suite as a `#[tokio::test]` for one backend.
#[macro_export]
macro_rules! stream_suite {
    ($backend:ty) => {
        $crate::stream_suite!($backend, ignore if any(), "");
    };
    ($backend:ty, ignore if $unset:meta, $why:literal) => {
        $crate::stream_suite!(@cases $backend; $unset; $why;
            concurrent_writers_with_delays_and_rollbacks_lose_nothing,
            streams_start_at_the_beginning_a_position_or_the_head,
            consumer_resumes_from_its_cursor_after_a_restart,
            failing_handler_is_retried_and_nothing_is_skipped,
            projection_is_exactly_once_despite_faults_before_the_cursor_save,
            consumer_survives_database_errors,
            shards_together_handle_every_event_once,
            lease_fails_over_when_the_holder_stops_or_dies,
            lease_taken_over_mid_handler_is_still_exactly_once,
            undecodable_payload_halts_the_consumer_at_its_position,
            kinds_filter_and_the_cursor_still_moves,
            dead_letters_after_repeated_failures,
            rebuild_resets_and_replays,
            nothing_committed_after_the_head_is_taken_is_skipped,
            consumer_stops_when_asked_in_the_middle_of_a_batch,
        );
    };
    (@cases $backend:ty; $unset:meta; $why:literal; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr($unset, ignore = $why)]
        async fn $case() {
            $crate::streams::$case::<$backend>().await;
        }
    )*};
}

/// A deterministic generator for writers' delays and choices.
pub(crate) struct Dice(pub(crate) u64);

impl Dice {
    pub(crate) fn next(&mut self, below: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

/// A database with the machine's and the consumers' tables, and a projection table.
pub(crate) async fn setup<B: TestBackend>(test: &str) -> Option<(TestDb<B>, Store<Order, B>)> {
    let db = B::create(test).await?;
    let store = db.store::<Order>().await;
    store.create_support_tables().await.expect("support tables are created");
    db.execute("CREATE TABLE seen (consumer VARCHAR(100) NOT NULL, event_id BIGINT NOT NULL)", vec![]).await;
    Some((db, store))
}

pub(crate) fn placed(n: i64) -> OrderPlaced {
    OrderPlaced { customer: format!("customer {n}"), amount_cents: n }
}

/// Inserts `n` orders, paying every other one; returns the number of events.
pub(crate) async fn seed<B: TestBackend>(store: &Store<Order, B>, n: i64) -> usize {
    let mut events = 0;
    for i in 1..=n {
        let order = store.insert(placed(i)).await.expect("inserted");
        events += 1;
        if i % 2 == 0 {
            store.apply(order.transition(OrderPaid { payment_ref: format!("pay {i}") })).await.expect("paid");
            events += 1;
        }
    }
    events
}

/// Streaming options for tests: small batches, quick polls.
pub(crate) fn quick() -> StreamOptions {
    StreamOptions::default()
        .batch_size(7)
        .poll_interval(Duration::from_millis(100))
        .gap_grace(Duration::from_millis(200))
}

/// A projection in the table `seen`: one row per event handled, written in
/// the consumer's transaction. Also counts calls, committed or not.
#[derive(Clone)]
pub(crate) struct Projection {
    name: &'static str,
    calls: Arc<AtomicUsize>,
    /// Fails the first `n` attempts at every event whose id is a multiple of `every`.
    fail: Option<(i64, usize)>,
    attempts: Arc<Mutex<Vec<i64>>>,
}

impl Projection {
    pub(crate) fn new(name: &'static str) -> Self {
        Self { name, calls: Arc::default(), fail: None, attempts: Arc::default() }
    }
}

impl<B: TestBackend> Handler<Order, B> for Projection {
    async fn handle(&mut self, tx: &mut Tx<'static, B>, event: &Envelope<Order>) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let id = event.position.id();
        if let Some((every, times)) = self.fail {
            let mut attempts = self.attempts.lock().unwrap();
            attempts.push(id);
            if id % every == 0 && attempts.iter().filter(|a| **a == id).count() <= times {
                return Err(format!("refusing event {id} for now").into());
            }
        }
        let sql = format!("INSERT INTO seen (consumer, event_id) VALUES ({}, {})", B::param(1), B::param(2));
        B::run_in(tx, &sql, vec![Arg::Text(self.name.into()), Arg::I64(id)]).await?;
        Ok(())
    }
}

impl<B: TestBackend> statefold::Projection<Order, B> for Projection {
    async fn reset(&mut self, tx: &mut Tx<'static, B>) -> Result<(), HandlerError> {
        let sql = format!("DELETE FROM seen WHERE consumer = {}", B::param(1));
        B::run_in(tx, &sql, vec![Arg::Text(self.name.into())]).await?;
        Ok(())
    }
}

/// The event ids a projection recorded, in insertion order of the table.
pub(crate) async fn seen<B: TestBackend>(db: &TestDb<B>, consumer: &str) -> Vec<i64> {
    let sql = format!("SELECT event_id FROM seen WHERE consumer = '{consumer}' ORDER BY event_id");
    B::integers(&db.pool, &sql).await.expect("seen reads")
}

/// Every event id in the log, in id order.
pub(crate) async fn all_ids<B: TestBackend>(db: &TestDb<B>) -> Vec<i64> {
    B::integers(&db.pool, "SELECT id FROM order_events ORDER BY id").await.expect("ids read")
}

/// Polls `condition` every 20 ms, up to 30 s; panics with `what` if it never holds.
pub(crate) async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1_500 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting: {what}");
}

/// A consumer running in a task until told to stop.
pub(crate) struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    pub(crate) fn start<B: TestBackend, H: Handler<Order, B> + 'static>(
        consumer: Consumer<Order, B>,
        mut handler: H,
    ) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            consumer
                .run(&mut handler, async {
                    let _ = stopped.await;
                })
                .await
        });
        Self { stop, task }
    }

    pub(crate) async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        self.task.await.expect("the consumer task ends")
    }
}

/// Waits until `consumer`'s cursor is at `target` or beyond.
pub(crate) async fn caught_up<B: TestBackend>(consumer: &Consumer<Order, B>, target: Position) {
    eventually(&format!("cursor of `{}` at {target}", consumer.key()), || async {
        consumer.position().await.expect("position reads") >= target
    })
    .await;
}

/// The position of the last event, through a stream from the head's reader.
pub(crate) async fn last_position<B: TestBackend>(store: &Store<Order, B>, events: usize) -> Position {
    let mut stream = store.stream_with(Start::Beginning, StreamOptions::default().batch_size(1_000));
    let mut last = Position::START;
    for _ in 0..events {
        last = stream.next().await.expect("an event").expect("decodes").position;
    }
    last
}

/// Given 8 writers that each hold their transaction open for a random time
/// before committing (and roll back one in ten), and, where writers run
/// concurrently, one that holds its transactions longer than the gap grace
/// and the MySQL probes' lock wait, when a stream reads all the while, then
/// it delivers every committed event exactly once, in position order, and
/// never a rolled-back one.
pub async fn concurrent_writers_with_delays_and_rollbacks_lose_nothing<B: TestBackend>() {
    let Some((_db, store)) = setup::<B>("gap_safety").await else { return };
    // SQLite serialises writers: shorter runs keep the test quick.
    let (rounds, max_delay_ms) = if B::NAME == "SQLite" { (60, 2) } else { (200, 8) };
    let options = StreamOptions::default().batch_size(50).gap_grace(Duration::from_millis(200));
    let mut stream = store.stream_with(Start::Beginning, options);

    let writers: Vec<_> = (0..8_u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (w + 1).wrapping_mul(0x1234_5678_9abc_def1));
                let mut committed = Vec::new();
                for n in 0..rounds {
                    let mut tx = store.begin().await.expect("a transaction");
                    let order = store.insert_in(&mut tx, placed(n)).await.expect("inserted");
                    let id = *order.id();
                    let mut written = vec![(id, 1)];
                    if dice.next(2) == 0 {
                        let paid = OrderPaid { payment_ref: format!("w{w} n{n}") };
                        store.apply_in(&mut tx, order.transition(paid)).await.expect("paid");
                        written.push((id, 2));
                    }
                    tokio::time::sleep(Duration::from_millis(dice.next(max_delay_ms + 1))).await;
                    if dice.next(10) == 0 {
                        tx.rollback().await.expect("rolled back");
                    } else {
                        tx.commit().await.expect("committed");
                        committed.extend(written);
                    }
                }
                committed
            })
        })
        .collect();
    // A slow writer: its events wait in holes (MySQL) or behind the fence
    // (PostgreSQL) for longer than the grace and the probe's lock wait.
    let slow = (B::NAME != "SQLite").then(|| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut committed = Vec::new();
            for n in 0..3 {
                let mut tx = store.begin().await.expect("a transaction");
                let order = store.insert_in(&mut tx, placed(n)).await.expect("inserted");
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                if n == 1 {
                    tx.rollback().await.expect("rolled back");
                } else {
                    tx.commit().await.expect("committed");
                    committed.push((*order.id(), 1));
                }
            }
            committed
        })
    });

    let (sender, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(envelope) = stream.next().await {
            let envelope = envelope.expect("every event decodes");
            if sender.send((envelope.position, envelope.record_id, envelope.version)).is_err() {
                break;
            }
        }
    });
    let mut committed = BTreeSet::new();
    for writer in writers.into_iter().chain(slow) {
        committed.extend(writer.await.expect("the writer ends"));
    }
    assert!(committed.len() > 500, "enough events to mean something: {}", committed.len());

    // Then the stream delivers each committed event once, in position order
    let mut received = Vec::with_capacity(committed.len());
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        while received.len() < committed.len() {
            received.push(delivered.recv().await.expect("the stream goes on"));
        }
    });
    all.await.unwrap_or_else(|_| panic!("only {} of {} events delivered", received.len(), committed.len()));
    reader.abort();
    while let Ok(extra) = delivered.try_recv() {
        received.push(extra);
    }
    assert!(received.windows(2).all(|w| w[0].0 < w[1].0), "positions strictly increase");
    let keys: Vec<(i64, i64)> = received.iter().map(|(_, id, version)| (*id, *version)).collect();
    let unique: BTreeSet<(i64, i64)> = keys.iter().copied().collect();
    assert_eq!(unique.len(), keys.len(), "no event is delivered twice");
    assert_eq!(unique, committed, "exactly the committed events, none rolled back");
}

/// A stream starts at the beginning, after a saved position, or at the head.
pub async fn streams_start_at_the_beginning_a_position_or_the_head<B: TestBackend>() {
    let Some((_db, store)) = setup::<B>("stream_starts").await else { return };
    // Given five events
    let events = seed(&store, 3).await + seed(&store, 1).await;
    assert_eq!(events, 5);

    // When streamed from the beginning, in small batches, then all come in order
    let mut stream = store.stream_with(Start::Beginning, quick().batch_size(2));
    let mut all = Vec::new();
    for _ in 0..events {
        all.push(stream.next().await.unwrap().unwrap());
    }
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(all[0].event, Order::Placed { customer: "customer 1".into(), amount_cents: 1 });
    assert_eq!((all[2].from, all[2].to, all[2].version), (Some(OrderStatus::Placed), OrderStatus::Paid, 2));

    // And from a position, only what follows it
    let mut after = store.stream_with(Start::After(all[2].position), quick());
    assert_eq!(after.next().await.unwrap().unwrap().position, all[3].position);

    // And from the head, only events written afterwards, which wake it up
    let head = store.head().await.unwrap();
    assert_eq!(head, all[4].position);
    let mut head = store.stream_with(Start::After(head), quick().poll_interval(Duration::from_secs(3600)));
    let waiting = tokio::spawn(async move { head.next().await.unwrap().unwrap() });
    let order = store.insert(placed(99)).await.unwrap();
    let next = waiting.await.unwrap();
    assert_eq!((next.record_id, next.version), (*order.id(), 1));
    assert!(next.position > all[4].position);
}

/// Given a consumer stopped half-way, when it starts again, then it goes on
/// from its saved cursor: every event handled once.
pub async fn consumer_resumes_from_its_cursor_after_a_restart<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("resume").await else { return };
    let events = seed(&store, 6).await;
    let consumer = || Consumer::new(&store, "resume").stream_options(quick());

    // When it handles the first part and stops
    let first = Running::start(consumer(), Projection::new("resume"));
    let target = last_position(&store, events).await;
    caught_up(&consumer(), target).await;
    first.stop().await.expect("a clean stop");
    assert_eq!(seen(&db, "resume").await, all_ids(&db).await);

    // And more events arrive while it is down, then it restarts
    let more = seed(&store, 4).await;
    let second = Running::start(consumer(), Projection::new("resume"));
    let target = last_position(&store, events + more).await;
    caught_up(&consumer(), target).await;
    second.stop().await.expect("a clean stop");

    // Then each event was handled exactly once
    assert_eq!(seen(&db, "resume").await, all_ids(&db).await);
}

/// Given a handler that fails the first two attempts at some events, then
/// each is retried until it succeeds: none skipped, none recorded twice.
pub async fn failing_handler_is_retried_and_nothing_is_skipped<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("retries").await else { return };
    let events = seed(&store, 6).await;
    let mut handler = Projection::new("retries");
    handler.fail = Some((3, 2));
    let attempts = handler.attempts.clone();
    let backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(20));
    let consumer = Consumer::new(&store, "retries").stream_options(quick()).backoff(backoff);
    let running = Running::start(consumer, handler);

    let target = last_position(&store, events).await;
    caught_up(&Consumer::new(&store, "retries"), target).await;
    running.stop().await.expect("a clean stop");

    let ids = all_ids(&db).await;
    assert_eq!(seen(&db, "retries").await, ids, "every event once, in order");
    let attempts = attempts.lock().unwrap().clone();
    for id in ids {
        let expected = if id % 3 == 0 { 3 } else { 1 };
        assert_eq!(attempts.iter().filter(|a| **a == id).count(), expected, "attempts at event {id}");
    }
}

/// Given faults injected after the handler and before the cursor save (the
/// process "dies" there), then the projection still holds each event once.
pub async fn projection_is_exactly_once_despite_faults_before_the_cursor_save<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("exactly_once").await else { return };
    let events = seed(&store, 20).await;
    let faulty = store.clone().with_fate(Fate::new(0.4, 17).at(&[FaultPoint::BeforeCursorSave]));
    let handler = Projection::new("exactly_once");
    let calls = handler.calls.clone();
    let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(5));
    let consumer = Consumer::new(&faulty, "exactly_once").stream_options(quick()).backoff(backoff);
    let running = Running::start(consumer, handler);

    let target = last_position(&store, events).await;
    caught_up(&Consumer::new(&store, "exactly_once"), target).await;
    running.stop().await.expect("a clean stop");

    let injected = usize::try_from(faulty.fate().unwrap().injected()).unwrap();
    assert!(injected > 0, "faults were injected");
    assert_eq!(calls.load(Ordering::SeqCst), events + injected, "each fault made the handler run again");
    assert_eq!(seen(&db, "exactly_once").await, all_ids(&db).await, "yet each event is projected once");
}

/// A projection whose handler, inside its transaction, takes `each` per
/// event, and at event `stall_at` (once) tells `stalled` and waits for `resume`.
struct Paced {
    projection: Projection,
    each: Duration,
    stall_at: Option<i64>,
    stalled: Arc<tokio::sync::Notify>,
    resume: Arc<tokio::sync::Notify>,
}

impl Paced {
    fn new(projection: Projection) -> Self {
        Self { projection, each: Duration::ZERO, stall_at: None, stalled: Arc::default(), resume: Arc::default() }
    }
}

impl<B: TestBackend> Handler<Order, B> for Paced {
    async fn handle(&mut self, tx: &mut Tx<'static, B>, event: &Envelope<Order>) -> Result<(), HandlerError> {
        Handler::<Order, B>::handle(&mut self.projection, tx, event).await?;
        if !self.each.is_zero() {
            tokio::time::sleep(self.each).await;
        }
        if self.stall_at == Some(event.position.id()) {
            self.stall_at = None;
            self.stalled.notify_one();
            self.resume.notified().await;
        }
        Ok(())
    }
}

/// Lets a stalled [`Paced`] handler go on when dropped: a test that fails
/// while it stalls then ends, instead of waiting forever to drop its
/// database (MySQL waits for the handler's open transaction).
struct Resume(Arc<tokio::sync::Notify>);

impl Drop for Resume {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// Waits for `signal`, up to 30 s; panics with `what` if it never comes.
async fn signalled(what: &str, signal: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(30), signal).await.unwrap_or_else(|_| panic!("gave up waiting: {what}"));
}

/// Given a consumer whose trips to the database fail now and then (faults
/// before its reads of the lease, the cursor and the events), then it goes
/// on and handles every event exactly once; and when the server kills its
/// connections mid-run, as a restart would, it reconnects and goes on.
pub async fn consumer_survives_database_errors<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("db_errors").await else { return };
    let events = seed(&store, 20).await;
    // A pool of its own: killing connections then hits the consumer's, not the test's.
    let pool = B::connect(&db.url).await.expect("a second pool opens");
    let faulty = Store::<Order, B>::new(pool).with_fate(Fate::new(0.3, 23).at(&[FaultPoint::BeforeConsumerQuery]));
    // Each event takes a third of the lease: the consumer renews it, and
    // faults strike, between events of a batch too (not only between batches).
    let handler = Paced { each: Duration::from_millis(10), ..Paced::new(Projection::new("db_errors")) };
    let calls = handler.projection.calls.clone();
    let consumer = Consumer::new(&faulty, "db_errors")
        .stream_options(quick())
        .lease_ttl(Duration::from_millis(30))
        .backoff(Backoff::new(Duration::from_millis(1), Duration::from_millis(5)));
    let running = Running::start(consumer, handler);

    // When faults strike while it catches up, then it handles every event
    caught_up(&Consumer::new(&store, "db_errors"), last_position(&store, events).await).await;
    assert!(faulty.fate().unwrap().injected() > 0, "faults were injected");
    assert_eq!(seen(&db, "db_errors").await, all_ids(&db).await, "every event once");

    // And when the server kills its connections, then it handles what follows
    let more = match db.kill_connections().await {
        Some(killed) => {
            assert!(killed > 0, "the consumer's connections were killed");
            seed(&store, 6).await
        }
        // SQLite has no server and no connection to kill: the faults above stand for an outage.
        None => 0,
    };
    caught_up(&Consumer::new(&store, "db_errors"), last_position(&store, events + more).await).await;
    running.stop().await.expect("a clean stop");

    assert_eq!(seen(&db, "db_errors").await, all_ids(&db).await, "every event once");
    // Faults strike outside the handler's transaction: none made it run again.
    assert_eq!(calls.load(Ordering::SeqCst), events + more, "each event handled once");
}

/// Given three shards of one consumer running at once, then together they
/// handle every event exactly once.
pub async fn shards_together_handle_every_event_once<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("shards").await else { return };
    let events = seed(&store, 30).await;
    let names = ["shard0", "shard1", "shard2"];
    let running: Vec<_> = (0..3)
        .map(|i| {
            let consumer = Consumer::new(&store, "sharded").shard(i, 3).stream_options(quick());
            Running::start(consumer, Projection::new(names[i as usize]))
        })
        .collect();
    let target = last_position(&store, events).await;
    for i in 0..3 {
        caught_up(&Consumer::new(&store, "sharded").shard(i, 3), target).await;
    }
    for shard in running {
        shard.stop().await.expect("a clean stop");
    }

    let mut union = Vec::new();
    for name in names {
        let ids = seen(&db, name).await;
        assert!(!ids.is_empty(), "{name} handled some events");
        union.extend(ids);
    }
    union.sort_unstable();
    assert_eq!(union, all_ids(&db).await, "every event once across the shards");
    assert_eq!(Consumer::new(&store, "sharded").shard(1, 3).key(), "sharded#1/3");
}

/// Given two instances of a consumer, then one runs and the other waits;
/// when the first stops, the second takes over at its cursor; when that one
/// dies without giving the lease up, a third takes over once it expires.
/// The projection holds each event once throughout.
pub async fn lease_fails_over_when_the_holder_stops_or_dies<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("lease").await else { return };
    let consumer = || Consumer::new(&store, "leased").stream_options(quick()).lease_ttl(Duration::from_millis(600));
    let first_handler = Projection::new("leased");
    let second_handler = Projection::new("leased");
    let (first_calls, second_calls) = (first_handler.calls.clone(), second_handler.calls.clone());
    let first = Running::start(consumer(), first_handler);
    let events = seed(&store, 5).await;
    caught_up(&consumer(), last_position(&store, events).await).await;
    let second = Running::start(consumer(), second_handler);

    // While the first holds the lease, the second handles nothing
    let more = seed(&store, 3).await;
    caught_up(&consumer(), last_position(&store, events + more).await).await;
    assert_eq!((first_calls.load(Ordering::SeqCst), second_calls.load(Ordering::SeqCst)), (events + more, 0));

    // When the first stops, the second takes over
    first.stop().await.expect("a clean stop");
    let later = seed(&store, 3).await;
    caught_up(&consumer(), last_position(&store, events + more + later).await).await;
    assert_eq!(second_calls.load(Ordering::SeqCst), later);

    // When the second dies holding the lease, a third takes over after it expires
    second.task.abort();
    let third = Running::start(consumer(), Projection::new("leased"));
    let last = seed(&store, 2).await;
    caught_up(&consumer(), last_position(&store, events + more + later + last).await).await;
    third.stop().await.expect("a clean stop");

    assert_eq!(seen(&db, "leased").await, all_ids(&db).await, "each event once across instances");
}

/// Given instance A stalled in its handler's transaction at an event for
/// longer than its lease, when instance B takes the lease over and handles
/// that event, and A then goes on, then A's late attempt does not commit:
/// each event is projected once. SQLite lets no one write while A's
/// transaction holds the write lock: there B waits, A's attempt is the one
/// that commits, and B goes on after it.
pub async fn lease_taken_over_mid_handler_is_still_exactly_once<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("takeover").await else { return };
    let events = seed(&store, 4).await;
    let ids = all_ids(&db).await;
    let stall_at = ids[2];
    let consumer = || {
        Consumer::new(&store, "takeover")
            .stream_options(quick())
            .lease_ttl(Duration::from_millis(300))
            .backoff(Backoff::new(Duration::from_millis(5), Duration::from_millis(50)))
    };
    let a = Paced { stall_at: Some(stall_at), ..Paced::new(Projection::new("takeover_a")) };
    let (stalled, resume) = (a.stalled.clone(), Resume(a.resume.clone()));

    // Given A stalled at the third event, and B started
    let first = Running::start(consumer(), a);
    signalled("A reaches the third event", stalled.notified()).await;
    let second = Running::start(consumer(), Projection::new("takeover_b"));

    // When A's lease expires, then B takes it and handles that event (not on SQLite)
    if B::NAME == "SQLite" {
        eventually("A's lease expires", || async {
            let expires = B::integers(&db.pool, "SELECT expires_at FROM statefold_leases").await.expect("lease reads");
            expires.iter().all(|at| *at < chrono::Utc::now().timestamp_millis())
        })
        .await;
    } else {
        eventually("B handles the event A stalls on", || async { seen(&db, "takeover_b").await.contains(&stall_at) })
            .await;
    }

    // And when A goes on, and more events follow, then they are handled
    drop(resume);
    let more = seed(&store, 2).await;
    caught_up(&consumer(), last_position(&store, events + more).await).await;
    first.stop().await.expect("A stops cleanly");
    second.stop().await.expect("B stops cleanly");

    // Then each event is projected once, by one of them
    let (by_a, by_b) = (seen(&db, "takeover_a").await, seen(&db, "takeover_b").await);
    let mut both = [by_a.clone(), by_b.clone()].concat();
    both.sort_unstable();
    assert_eq!(both, all_ids(&db).await, "each event once across A and B");
    assert_eq!(by_a[..2], ids[..2], "A handled the events before");
    if B::NAME == "SQLite" {
        assert!(by_a.contains(&stall_at), "A's attempt committed: B could not write before it ended");
    } else {
        assert!(!by_a.contains(&stall_at), "A's late attempt did not commit");
        assert!(by_b.contains(&stall_at), "B handled the event");
    }
}

/// Given an event whose stored payload no longer decodes, then the consumer
/// stops with an error naming its position, and its cursor stays before it.
pub async fn undecodable_payload_halts_the_consumer_at_its_position<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("undecodable").await else { return };
    seed(&store, 4).await;
    let ids = all_ids(&db).await;
    let broken = ids[3];
    let sql = format!("UPDATE order_events SET payload = {} WHERE id = {}", B::json_param(1), B::param(2));
    db.execute(&sql, vec![Arg::Text(r#"{"nonsense": true}"#.into()), Arg::I64(broken)]).await;

    let consumer = Consumer::new(&store, "strict").stream_options(quick());
    let mut handler = Projection::new("strict");
    let error = consumer.run(&mut handler, std::future::pending()).await.unwrap_err();
    let Error::Decode { position, .. } = error else { panic!("{error}") };
    assert_eq!(position.id(), broken, "{error}");
    assert!(error.to_string().contains(&format!("event at position {position}")), "{error}");
    assert_eq!(seen(&db, "strict").await, ids[..3], "the events before it were handled");
    assert_eq!(consumer.position().await.unwrap().id(), ids[2], "the cursor stays before it");

    // And the stream itself reports the same error, after the events before it
    let mut stream = store.stream_with(Start::Beginning, quick());
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    assert!(matches!(stream.next().await, Some(Err(Error::Decode { position, .. })) if position.id() == broken));
}

/// Given a consumer of one kind of event, then it handles only those, and
/// its cursor still moves past the others.
pub async fn kinds_filter_and_the_cursor_still_moves<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("kinds").await else { return };
    let events = seed(&store, 6).await;
    let consumer = || Consumer::new(&store, "payments").kinds([OrderStatus::Paid]).stream_options(quick());
    let running = Running::start(consumer(), Projection::new("payments"));
    let target = last_position(&store, events).await;
    caught_up(&consumer(), target).await;
    running.stop().await.expect("a clean stop");

    let paid = B::integers(&db.pool, "SELECT id FROM order_events WHERE kind = 'paid' ORDER BY id").await.unwrap();
    assert_eq!(paid.len(), 3);
    assert_eq!(seen(&db, "payments").await, paid);
}

/// Given a handler that always fails on one event, with dead letters after
/// two attempts, then that event is recorded with its error and the
/// consumer moves on.
pub async fn dead_letters_after_repeated_failures<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("dead_letters").await else { return };
    let events = seed(&store, 4).await;
    let ids = all_ids(&db).await;
    let mut handler = Projection::new("dead");
    // Fails every event whose id is a multiple of the third's, forever.
    handler.fail = Some((ids[2], usize::MAX));
    let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
    let consumer = Consumer::new(&store, "dead").stream_options(quick()).backoff(backoff).dead_letter_after(2);
    let running = Running::start(consumer, handler);
    caught_up(&Consumer::new(&store, "dead"), last_position(&store, events).await).await;
    running.stop().await.expect("a clean stop");

    let buried: Vec<i64> = ids.iter().copied().filter(|id| id % ids[2] == 0).collect();
    let handled: Vec<i64> = ids.iter().copied().filter(|id| id % ids[2] != 0).collect();
    assert_eq!(seen(&db, "dead").await, handled);
    let letters = B::integers(&db.pool, "SELECT position FROM statefold_dead_letters ORDER BY position").await.unwrap();
    assert_eq!(letters, buried);
    let attempts = B::integers(&db.pool, "SELECT attempts FROM statefold_dead_letters").await.unwrap();
    assert!(attempts.iter().all(|a| *a == 2));
    let sql = format!("SELECT COUNT(*) FROM statefold_dead_letters WHERE error LIKE '%refusing event {}%'", ids[2]);
    assert_eq!(B::integers(&db.pool, &sql).await.unwrap(), [1]);
}

/// Given a projection built once, when it is rebuilt, then its reset and
/// the cursor's happen together and every event is replayed once.
pub async fn rebuild_resets_and_replays<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("rebuild").await else { return };
    let events = seed(&store, 5).await;
    let consumer = Consumer::new(&store, "rebuilt").stream_options(quick());
    let mut handler = Projection::new("rebuilt");
    assert_eq!(consumer.rebuild(&mut handler, std::future::pending()).await.unwrap(), events as u64);
    assert_eq!(seen(&db, "rebuilt").await, all_ids(&db).await);

    // When rebuilt again, then the projection is the same, not doubled
    assert_eq!(consumer.rebuild(&mut handler, std::future::pending()).await.unwrap(), events as u64);
    assert_eq!(seen(&db, "rebuilt").await, all_ids(&db).await);
    let unique: HashSet<i64> = seen(&db, "rebuilt").await.into_iter().collect();
    assert_eq!(unique.len(), events);
}

/// Given a writer holding an event uncommitted while, where writers run
/// concurrently, a later event commits, when the head is taken meanwhile,
/// then a stream started after the head misses nothing committed once
/// `head()` has returned: PostgreSQL and SQLite return a head before the
/// held event at once; MySQL waits for the writer, then returns the end.
pub async fn nothing_committed_after_the_head_is_taken_is_skipped<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("head_in_flight").await else { return };
    seed(&store, 1).await;
    // MySQL: someone reading `innodb_trx` often keeps InnoDB serving an old
    // copy of it, one without the writer below: the head must not trust it.
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(B::NAME == "MySQL"));
    let polls = Arc::new(AtomicUsize::new(0));
    let poller = tokio::spawn({
        let (pool, polling, polls) = (db.pool.clone(), polling.clone(), polls.clone());
        async move {
            while polling.load(Ordering::SeqCst) {
                B::integers(&pool, "SELECT COUNT(*) FROM information_schema.innodb_trx").await.expect("read");
                polls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    });
    if B::NAME == "MySQL" {
        eventually("the poller at work", || async { polls.load(Ordering::SeqCst) >= 3 }).await;
    }
    let mut tx = store.begin().await.expect("a transaction");
    let held = store.insert_in(&mut tx, placed(10)).await.expect("inserted");
    let later = if B::NAME == "SQLite" { None } else { Some(store.insert(placed(11)).await.expect("inserted")) };

    let mut head = tokio::spawn({
        let store = store.clone();
        async move { store.head().await }
    });
    let head = if B::NAME == "MySQL" {
        // When the head is taken, then it waits for the writer holding an earlier id
        let early = tokio::time::timeout(Duration::from_millis(500), &mut head).await;
        assert!(early.is_err(), "head() returned while a writer held an earlier id: {early:?}");
        polling.store(false, Ordering::SeqCst);
        poller.await.expect("the poller ends");
        let early = tokio::time::timeout(Duration::from_millis(500), &mut head).await;
        assert!(early.is_err(), "head() returned while a writer held an earlier id: {early:?}");
        tx.commit().await.expect("committed");
        let head = tokio::time::timeout(Duration::from_secs(30), head).await.expect("head() returns once it commits");
        head.expect("the head task ends").expect("the head is read")
    } else {
        // When the head is taken, then it returns without waiting for the writer
        poller.await.expect("the poller ends");
        let head = tokio::time::timeout(Duration::from_secs(30), head).await.expect("head() does not wait");
        let head = head.expect("the head task ends").expect("the head is read");
        tx.commit().await.expect("committed");
        head
    };

    // And a stream after it delivers every event committed since
    let mut stream = store.stream_with(Start::After(head), quick());
    let last = store.insert(placed(12)).await.expect("inserted");
    let mut records = Vec::new();
    while records.last() != Some(last.id()) {
        records.push(stream.next().await.expect("an event").expect("decodes").record_id);
    }
    if B::NAME == "MySQL" {
        assert_eq!(records, [*last.id()], "the head was the end once the writer committed");
    } else {
        assert!(records.contains(held.id()), "the held event was skipped: head {head}, then {records:?}");
    }
    if let Some(later) = later {
        let delivered_twice = records.iter().filter(|id| *id == later.id()).count() > 1;
        assert!(!delivered_twice, "no event twice: {records:?}");
    }
}

/// Given a consumer in the middle of a batch, when it is asked to stop while
/// it handles an event, then it finishes that event and stops, rather than
/// going on (a shutdown seen once must stay seen).
pub async fn consumer_stops_when_asked_in_the_middle_of_a_batch<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("stop_mid_batch").await else { return };
    seed(&store, 4).await;
    let ids = all_ids(&db).await;
    let mut handler = Paced::new(Projection::new("stopping"));
    handler.stall_at = Some(ids[1]);
    let (stalled, resume) = (handler.stalled.clone(), Resume(handler.resume.clone()));
    let consumer = Consumer::new(&store, "stopping").stream_options(quick().batch_size(100));
    let Running { stop, task } = Running::start(consumer, handler);

    signalled("the handler at the second event", stalled.notified()).await;
    stop.send(()).expect("the consumer is running");
    drop(resume);
    let stopped = tokio::time::timeout(Duration::from_secs(30), task).await;
    let result = stopped.expect("the consumer stops once its event is handled").expect("the consumer task ends");
    result.expect("a clean stop");
    assert_eq!(seen(&db, "stopping").await, ids[..2], "it finished the event in hand, and no more");
}
