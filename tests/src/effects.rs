//! Side effects as data, on every backend: pure handlers compared as
//! values; runs once per idempotency key (32 racers included), in one
//! transaction, inside a caller's too; bad input writes nothing; the outbox
//! delivered at least once through faults, a receiver that was down, dead
//! letters after N attempts and at once for a 4xx.

use crate::db::{TestBackend, TestDb};
use axum::http::{HeaderMap, StatusCode};
use statefold::effects::{
    Channel, Delivery, Destination, Dispatcher, Effects, Http, Message, Method, Outgoing, Ran, Request, Runner,
    SendError,
};
use statefold::testing::assert_effects;
use statefold::{Backoff, Error, Fate, FaultPoint, Machine, Record, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Instantiates every case of the effects suite as a `#[tokio::test]` for one backend.
#[macro_export]
macro_rules! effects_suite {
    ($backend:ty) => {
        $crate::effects_suite!($backend, ignore if any(), "");
    };
    ($backend:ty, ignore if $unset:meta, $why:literal) => {
        $crate::effects_suite!(@cases $backend; $unset; $why;
            pure_handlers_compare_as_data,
            a_replayed_key_writes_nothing_and_returns_the_first_outcome,
            thirty_two_concurrent_runs_of_one_key_run_once,
            a_failed_run_leaves_its_key_free,
            a_refused_transition_among_several_writes_nothing,
            effects_run_inside_the_callers_transaction,
            bad_input_is_a_typed_error_that_writes_nothing,
            expired_keys_are_cleaned_up,
            a_fault_between_commit_and_send_still_delivers_every_message,
            a_receiver_that_was_down_gets_everything_in_order,
            dead_letters_after_n_attempts,
            a_4xx_is_dead_lettered_at_once,
            one_dispatcher_runs_at_a_time,
        );
    };
    (@cases $backend:ty; $unset:meta; $why:literal; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr($unset, ignore = $why)]
        async fn $case() {
            $crate::effects::$case::<$backend>().await;
        }
    )*};
}

/// How long a test waits for a signal before calling it missing.
const PATIENCE: Duration = Duration::from_secs(30);

/// A payment card: the seed's machine.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "cards")]
pub enum Card {
    /// Usable.
    #[initial]
    Active {
        /// Whose card it is.
        customer: String,
    },
    /// Blocked, for a reason.
    #[from(Active)]
    Blocked {
        /// Why.
        reason: String,
    },
}

/// The pure handler under test: block a card and say so.
pub fn block(card: Record<Card, CardActive>, reason: &str) -> Effects {
    let id = *card.id();
    Effects::new().transition(card.transition(CardBlocked { reason: reason.to_owned() })).message(Message::new(
        "card-status-changed",
        id.to_string(),
        &serde_json::json!({ "card": id, "status": "blocked" }),
    ))
}

/// Blocks every card of a customer, then notifies them once.
pub fn block_all(customer: &str, cards: Vec<Record<Card, CardActive>>) -> Effects {
    let blocked: Effects = cards.into_iter().map(|card| block(card, "customer request")).sum();
    blocked.message(Message::new("customer-notifications", customer, &"all your cards are blocked"))
}

async fn setup<B: TestBackend>(test: &str) -> Option<(TestDb<B>, Store<Card, B>, Runner<B>)> {
    let db = B::create(test).await?;
    let cards = db.store::<Card>().await;
    cards.create_support_tables().await.expect("support tables are created");
    let runner = Runner::new(db.pool.clone()).with_store(&cards);
    Some((db, cards, runner))
}

async fn active<B: TestBackend>(cards: &Store<Card, B>, customer: &str) -> Record<Card, CardActive> {
    cards.insert(CardActive { customer: customer.to_owned() }).await.expect("inserted")
}

async fn state<B: TestBackend>(cards: &Store<Card, B>, id: i64) -> (CardStatus, i64) {
    let row = match cards.load(&id).await.expect("loads") {
        CardState::Active(r) => r.into_row(),
        CardState::Blocked(r) => r.into_row(),
    };
    (row.status, row.version)
}

fn quick<B: statefold::Backend>(dispatcher: Dispatcher<B>) -> Dispatcher<B> {
    dispatcher
        .backoff(Backoff::new(Duration::from_millis(10), Duration::from_millis(100)))
        .poll_interval(Duration::from_millis(50))
        .lease_ttl(Duration::from_secs(2))
}

/// A dispatcher running in a task until dropped.
struct Running(Option<tokio::sync::oneshot::Sender<()>>, tokio::task::JoinHandle<Result<(), Error>>);

impl Running {
    fn start<B: statefold::Backend>(dispatcher: Dispatcher<B>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        Self(Some(stop), tokio::spawn(async move { dispatcher.run(async { drop(stopped.await) }).await }))
    }

    async fn stop(mut self) {
        drop(self.0.take());
        let result = tokio::time::timeout(PATIENCE, &mut self.1).await.expect("the dispatcher stops");
        result.expect("no panic").expect("the dispatcher ends without error");
    }
}

async fn next<T>(receiver: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(PATIENCE, receiver.recv())
        .await
        .unwrap_or_else(|_| panic!("gave up waiting: {what}"))
        .unwrap_or_else(|| panic!("closed while waiting: {what}"))
}

/// Polls `condition` every 20 ms, up to 30 s, where no signal exists (a row
/// updated after the send that the test saw).
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1_500 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting: {what}");
}

/// Given a card, when the handler blocks it, then its effects are exactly
/// one transition and one message; blocking all of a customer's cards is
/// the merge of blocking each, plus one notification.
pub async fn pure_handlers_compare_as_data<B: TestBackend>() {
    let Some((_db, cards, _)) = setup::<B>("pure").await else { return };
    let (a, b) = (active(&cards, "ada").await, active(&cards, "ada").await);

    let expected = Effects::new()
        .transition(a.clone().transition(CardBlocked { reason: "lost".into() }))
        .message(Message::new("card-status-changed", "1", &serde_json::json!({ "card": 1, "status": "blocked" })));
    statefold::assert_effects!(block(a.clone(), "lost"), expected);

    let all = block_all("ada", vec![a.clone(), b.clone()]);
    assert_effects(
        &all,
        &block(a.clone(), "customer request").merge(block(b, "customer request")).message(Message::new(
            "customer-notifications",
            "ada",
            &"all your cards are blocked",
        )),
    );
    assert_eq!(all.transitions().len(), 2);
    assert_eq!(all.messages().count(), 3);

    let mismatch = std::panic::catch_unwind(|| assert_effects(&block(a.clone(), "stolen"), &block(a, "lost")));
    let message = *mismatch.expect_err("different effects fail").downcast::<String>().expect("a message");
    assert!(message.contains("- ") && message.contains("\"lost\"") && message.contains("\"stolen\""), "{message}");
}

/// Given effects run under a key, when the same key runs again, then
/// nothing new is written and the first outcome comes back.
pub async fn a_replayed_key_writes_nothing_and_returns_the_first_outcome<B: TestBackend>() {
    let Some((db, cards, runner)) = setup::<B>("replay").await else { return };
    let card = active(&cards, "ada").await;
    let id = *card.id();
    let effects = block(card, "lost");

    let first = runner.run("block-1", &effects).await.expect("runs");
    assert!(!first.replayed);
    assert_eq!(first.outcome.transitions[0].to, "Blocked");
    assert_eq!(first.outcome.message_ids.len(), 1);
    let again = runner.run("block-1", &effects).await.expect("replays");
    assert_eq!(again, Ran { outcome: first.outcome.clone(), replayed: true });
    assert_eq!(runner.outcome_of("block-1").await.expect("reads"), Some(first.outcome));

    assert_eq!(state(&cards, id).await, (CardStatus::Blocked, 2));
    let history = cards.history(&id).await.expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].metadata.idempotency_key.as_deref(), Some("block-1"), "the event names its key");
    assert_eq!(Dispatcher::<B>::new(db.pool.clone()).pending().await.expect("counts"), 1);
}

/// Given 32 tasks running the same effects under one key at once, then
/// exactly one runs them and every other returns its outcome.
pub async fn thirty_two_concurrent_runs_of_one_key_run_once<B: TestBackend>() {
    let Some((db, cards, runner)) = setup::<B>("racers").await else { return };
    let card = active(&cards, "ada").await;
    let id = *card.id();
    let effects = Arc::new(block(card, "lost"));
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let racers: Vec<_> = (0..32)
        .map(|_| {
            let (runner, effects, barrier) = (runner.clone(), Arc::clone(&effects), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                runner.run("one-key", &effects).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.expect("no panic").expect("every racer gets an outcome"));
    }
    assert_eq!(results.iter().filter(|r| !r.replayed).count(), 1, "exactly one ran");
    assert!(results.iter().all(|r| r.outcome == results[0].outcome), "all share its outcome");
    assert_eq!(state(&cards, id).await, (CardStatus::Blocked, 2));
    assert_eq!(cards.history(&id).await.expect("history").len(), 2, "one new event");
    assert_eq!(Dispatcher::<B>::new(db.pool.clone()).pending().await.expect("counts"), 1, "one message");
}

/// Given effects whose transition is refused (the card moved on), then
/// nothing is written, the key stays free, and a corrected run under the
/// same key goes through.
pub async fn a_failed_run_leaves_its_key_free<B: TestBackend>() {
    let Some((db, cards, runner)) = setup::<B>("failed").await else { return };
    let card = active(&cards, "ada").await;
    let stale = block(card.clone(), "lost").merge(block(card, "twice"));
    let error = runner.run("k", &stale).await.expect_err("the second transition conflicts");
    assert!(matches!(error, Error::Conflict { .. }), "{error}");
    assert_eq!(runner.outcome_of("k").await.expect("reads"), None);
    assert_eq!(state(&cards, 1).await, (CardStatus::Active, 1), "the first transition was rolled back");
    assert_eq!(Dispatcher::<B>::new(db.pool.clone()).pending().await.expect("counts"), 0);

    let CardState::Active(card) = cards.load(&1).await.expect("loads") else { panic!("active") };
    assert!(!runner.run("k", &block(card, "lost")).await.expect("runs").replayed);
}

/// Given effects moving two cards and sending a message, when the second
/// card moved on since it was read, then the run is a conflict naming it,
/// nothing is written (not the first card's transition, not the message,
/// not the key), and the corrected run goes through under the same key.
pub async fn a_refused_transition_among_several_writes_nothing<B: TestBackend>() {
    let Some((db, cards, runner)) = setup::<B>("refused").await else { return };
    let (first, second) = (active(&cards, "ada").await, active(&cards, "ada").await);
    let (first_id, second_id) = (*first.id(), *second.id());
    cards.apply(second.clone().transition(CardBlocked { reason: "elsewhere".into() })).await.expect("moved on");
    let stale = block_all("ada", vec![first.clone(), second]);

    let error = runner.run("k", &stale).await.expect_err("the second card conflicts");
    let Error::Conflict { id, expected_version: 1, actual_version: 2, .. } = &error else { panic!("{error}") };
    assert_eq!(id, &second_id.to_string(), "{error}");
    assert_eq!(state(&cards, first_id).await, (CardStatus::Active, 1), "the first transition was not kept");
    assert_eq!(cards.history(&first_id).await.expect("history").len(), 1, "nor its event");
    assert_eq!(runner.outcome_of("k").await.expect("reads"), None, "the key is free");
    assert_eq!(Dispatcher::<B>::new(db.pool.clone()).pending().await.expect("counts"), 0, "no message");

    let ran = runner.run("k", &block_all("ada", vec![first])).await.expect("runs");
    assert!(!ran.replayed);
    assert_eq!(state(&cards, first_id).await, (CardStatus::Blocked, 2));
    assert_eq!(Dispatcher::<B>::new(db.pool.clone()).pending().await.expect("counts"), 2);
}

/// Given a caller's transaction, effects run in it commit with it, and
/// roll back with it.
pub async fn effects_run_inside_the_callers_transaction<B: TestBackend>() {
    let Some((db, cards, runner)) = setup::<B>("in_tx").await else { return };
    let card = active(&cards, "ada").await;
    let effects = block(card, "lost");

    let mut tx = cards.begin().await.expect("begins");
    assert!(!runner.run_in(&mut tx, "k", &effects).await.expect("runs").replayed);
    tx.rollback().await.expect("rolls back");
    assert_eq!(state(&cards, 1).await, (CardStatus::Active, 1));
    assert_eq!(runner.outcome_of("k").await.expect("reads"), None);

    let mut tx = cards.begin().await.expect("begins");
    let ran = runner.run_in(&mut tx, "k", &effects).await.expect("runs");
    let replay = runner.run_in(&mut tx, "k", &effects).await.expect("replays in the same transaction");
    assert!(replay.replayed && replay.outcome == ran.outcome);
    tx.commit().await.expect("commits");
    assert_eq!(state(&cards, 1).await, (CardStatus::Blocked, 2));
    assert_eq!(Dispatcher::<B>::new(db.pool.clone()).pending().await.expect("counts"), 1);
}

/// Given effects built from bad input (a payload that does not serialise,
/// a URL that does not parse, a machine without a store, a bad key), then
/// running them is a typed error and writes nothing.
pub async fn bad_input_is_a_typed_error_that_writes_nothing<B: TestBackend>() {
    let Some((db, cards, runner)) = setup::<B>("bad_input").await else { return };
    let card = active(&cards, "ada").await;
    let unserialisable: BTreeMap<(i32, i32), i32> = BTreeMap::from([((1, 2), 3)]);
    let bad_message = block(card.clone(), "lost").message(Message::new("t", "k", &unserialisable));
    let bad_url = block(card.clone(), "lost").request(Request::new(Method::Post, "http//nowhere"));
    assert!(Request::new(Method::Post, "http//nowhere").check().is_err(), "checked when built, too");

    for (key, effects) in [("m", &bad_message), ("u", &bad_url)] {
        let error = runner.run(key, effects).await.expect_err("refused");
        assert!(matches!(error, Error::InvalidEffect { .. }), "{error}");
        assert!(error.to_string().contains("nothing was written"), "{error}");
    }
    let bare = Runner::<B>::new(db.pool.clone());
    let error = bare.run("x", &block(card.clone(), "lost")).await.expect_err("no store of Card");
    assert!(matches!(error, Error::UnregisteredMachine { machine: "Card" }), "{error}");
    for key in [String::new(), "k".repeat(256)] {
        let error = runner.run(&key, &block(card.clone(), "lost")).await.expect_err("bad key");
        assert!(matches!(error, Error::InvalidKey { .. }), "{error}");
    }

    assert_eq!(state(&cards, 1).await, (CardStatus::Active, 1));
    for key in ["m", "u", "x"] {
        assert_eq!(runner.outcome_of(key).await.expect("reads"), None);
    }
    assert_eq!(Dispatcher::<B>::new(db.pool.clone()).pending().await.expect("counts"), 0);
}

/// Given keys past their time to live, cleanup deletes them (and only
/// them), and a deleted key runs again.
pub async fn expired_keys_are_cleaned_up<B: TestBackend>() {
    let Some((db, _cards, runner)) = setup::<B>("expiry").await else { return };
    let short = runner.clone().key_ttl(Duration::ZERO);
    let hello = Effects::new().message(Message::new("t", "k", &"hello"));
    short.run("old", &hello).await.expect("runs");
    runner.run("young", &hello).await.expect("runs");
    // The database's clock must pass the expiry, a millisecond after the run.
    eventually("a deletion", || async { short.cleanup().await.expect("cleans") == 1 }).await;
    assert_eq!(runner.outcome_of("old").await.expect("reads"), None);
    assert!(runner.outcome_of("young").await.expect("reads").is_some());
    assert!(!short.run("old", &hello).await.expect("runs again").replayed);
    assert_eq!(Dispatcher::<B>::new(db.pool.clone()).pending().await.expect("counts"), 3);
}

/// Given runs whose commit is followed by a fault (the caller sees an
/// error, the run is durable), and a dispatcher that fails before and
/// after sends at random, then every message is delivered, duplicates
/// carry the same id, and the outbox empties.
pub async fn a_fault_between_commit_and_send_still_delivers_every_message<B: TestBackend>() {
    let Some((db, cards, runner)) = setup::<B>("faults").await else { return };
    let faulty = runner.clone().with_fate(Fate::new(1.0, 7).at(&[FaultPoint::AfterCommit]));
    let mut expected = BTreeSet::new();
    for i in 0..10 {
        let card = active(&cards, "ada").await;
        let key = format!("block-{i}");
        let error = faulty.run(&key, &block(card.clone(), "lost")).await.expect_err("the fault");
        assert!(matches!(error, Error::InjectedFault { point: FaultPoint::AfterCommit }), "{error}");
        let ran = runner.run(&key, &block(card, "lost")).await.expect("the retry replays");
        assert!(ran.replayed, "the faulty run was durable");
        expected.extend(ran.outcome.message_ids);
    }

    let (channel, mut deliveries) = Channel::new();
    let fate = Fate::new(0.3, 42).at(&[FaultPoint::BeforeSend, FaultPoint::AfterSend]);
    let dispatcher = quick(Dispatcher::<B>::new(db.pool.clone()).messages(channel).with_fate(fate).max_attempts(1_000));
    let running = Running::start(dispatcher);
    let (mut seen, mut received) = (BTreeSet::new(), 0);
    while seen != expected {
        let delivery = next(&mut deliveries, "every message").await;
        assert!(expected.contains(&delivery.id), "only committed messages");
        seen.insert(delivery.id);
        received += 1;
    }
    let dispatcher = Dispatcher::<B>::new(db.pool.clone());
    eventually("an empty outbox", || async { dispatcher.pending().await.expect("counts") == 0 }).await;
    running.stop().await;
    assert!(received >= expected.len());
    eprintln!("{} messages, {received} deliveries", expected.len());
}

/// What a test HTTP receiver saw: `(Idempotency-Key, path, body)`.
type Seen = (String, String, String);

/// A receiver on `listener` that answers `status` and reports each request.
fn receiver(
    listener: tokio::net::TcpListener,
    status: StatusCode,
) -> (mpsc::UnboundedReceiver<Seen>, tokio::task::JoinHandle<()>) {
    let (sender, seen) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
        let sender = sender.clone();
        async move {
            let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let _ = sender.send((key, uri.path().to_owned(), body));
            status
        }
    });
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serves");
    });
    (seen, server)
}

/// Counts failed sends of a destination, and says when one happens.
struct Watched<D> {
    inner: D,
    failures: mpsc::UnboundedSender<SendError>,
}

impl<D: Destination> Destination for Watched<D> {
    async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let result = self.inner.send(delivery).await;
        if let Err(error) = &result {
            let _ = self.failures.send(error.clone());
        }
        result
    }
}

/// Given a receiver that is down (its port refuses connections) while
/// requests are committed, when it comes back, then it gets every request
/// once per key, in order per key, each with its `Idempotency-Key`.
pub async fn a_receiver_that_was_down_gets_everything_in_order<B: TestBackend>() {
    let Some((db, _cards, runner)) = setup::<B>("down").await else { return };
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        probe.local_addr().expect("an address").port()
    };
    let url = |path: &str| format!("http://127.0.0.1:{port}/{path}");
    let mut ids = Vec::new();
    for i in 0..3 {
        for card in ["a", "b"] {
            let request = Request::post(&url(&format!("cards/{card}"))).json(&i).key(card);
            ids.push(
                runner
                    .run(&format!("{card}-{i}"), &Effects::new().request(request))
                    .await
                    .expect("runs")
                    .outcome
                    .message_ids,
            );
        }
    }

    let (failures, mut failed) = mpsc::unbounded_channel();
    let http = Watched { inner: Http::new().timeout(Duration::from_secs(2)), failures };
    let running = Running::start(quick(Dispatcher::<B>::new(db.pool.clone()).requests(http).max_attempts(1_000)));
    for _ in 0..3 {
        let error = next(&mut failed, "a refused connection").await;
        assert!(error.is_retryable(), "{error}");
    }

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the port is free again");
    let (mut seen, server) = receiver(listener, StatusCode::OK);
    let mut by_card: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    while keys.len() < 6 {
        let (key, path, body) = next(&mut seen, "every request").await;
        if keys.insert(key) {
            by_card.entry(path).or_default().push(body);
        }
    }
    running.stop().await;
    server.abort();
    assert_eq!(by_card["/cards/a"], ["0", "1", "2"], "in order per key");
    assert_eq!(by_card["/cards/b"], ["0", "1", "2"], "in order per key");
    assert_eq!(keys, ids.into_iter().flatten().collect::<BTreeSet<_>>(), "the message ids are the idempotency keys");
}

/// A destination that always fails, retryably, and reports each attempt.
struct Down(mpsc::UnboundedSender<u32>);

impl Destination for Down {
    async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let _ = self.0.send(delivery.attempt);
        Err(SendError::retryable("the broker is down"))
    }
}

/// Given a destination that keeps failing, then the message is tried N
/// times and becomes a dead letter; a message of another key is not held
/// up; a requeued dead letter is pending again.
pub async fn dead_letters_after_n_attempts<B: TestBackend>() {
    crate::observe::install();
    let Some((db, _cards, runner)) = setup::<B>("dead").await else { return };
    let message = Message::new("t", "k", &"never delivered");
    runner.run("k", &Effects::new().message(message.clone())).await.expect("runs");
    let (attempts, mut attempted) = mpsc::unbounded_channel();
    let dispatcher = quick(Dispatcher::<B>::new(db.pool.clone()).messages(Down(attempts)).max_attempts(3));
    let running = Running::start(dispatcher);
    for expected in 1..=3 {
        assert_eq!(next(&mut attempted, "an attempt").await, expected);
    }
    let dispatcher = Dispatcher::<B>::new(db.pool.clone());
    eventually("a dead letter", || async { dispatcher.dead_letters().await.expect("reads").len() == 1 }).await;
    running.stop().await;
    assert!(attempted.try_recv().is_err(), "no fourth attempt");
    let dead = dispatcher.dead_letters().await.expect("reads").remove(0);
    assert_eq!((dead.attempts, dead.error.as_str()), (3, "the broker is down"));
    assert_eq!(dead.outgoing, Outgoing::Message(message));
    assert_eq!(dispatcher.pending().await.expect("counts"), 0);
    let counted = crate::observe::counters(&[("kind", "message")]);
    assert!(counted.get("statefold_outbox_retries_total") >= Some(&2), "two retries counted: {counted:?}");
    assert!(counted.get("statefold_outbox_dead_letters_total") >= Some(&1), "a dead letter counted: {counted:?}");
    let logged = crate::observe::log_lines(&dead.id);
    assert!(
        logged.iter().any(|line| line.contains("dead letter") && line.contains("the broker is down")),
        "{logged:?}"
    );
    assert!(dispatcher.requeue(dead.row).await.expect("requeues"));
    assert_eq!(dispatcher.pending().await.expect("counts"), 1);
}

/// Given a receiver that answers 404, then the request is sent once and
/// dead-lettered at once, with the status in its error.
pub async fn a_4xx_is_dead_lettered_at_once<B: TestBackend>() {
    let Some((db, _cards, runner)) = setup::<B>("four_oh_four").await else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let port = listener.local_addr().expect("an address").port();
    let (mut seen, server) = receiver(listener, StatusCode::NOT_FOUND);
    let request = Request::post(&format!("http://127.0.0.1:{port}/nowhere")).json(&"x");
    runner.run("k", &Effects::new().request(request)).await.expect("runs");

    let running = Running::start(quick(Dispatcher::<B>::new(db.pool.clone()).requests(Http::new())));
    next(&mut seen, "the request").await;
    let dispatcher = Dispatcher::<B>::new(db.pool.clone());
    eventually("a dead letter", || async { dispatcher.dead_letters().await.expect("reads").len() == 1 }).await;
    running.stop().await;
    server.abort();
    let dead = dispatcher.dead_letters().await.expect("reads").remove(0);
    assert_eq!(dead.attempts, 1, "at once");
    assert!(dead.error.contains("404"), "{}", dead.error);
    assert!(seen.try_recv().is_err(), "sent once");
}

/// Given a dispatcher that holds the outbox's lease, when a second one
/// starts, then it sends nothing while the first runs, and takes over once
/// the first stops.
pub async fn one_dispatcher_runs_at_a_time<B: TestBackend>() {
    let Some((db, _cards, runner)) = setup::<B>("one_dispatcher").await else { return };
    let say = |n: usize| Effects::new().message(Message::new("t", format!("k{n}"), &n));
    let (first, mut by_first) = Channel::new();
    let running_first = Running::start(quick(Dispatcher::<B>::new(db.pool.clone()).messages(first)));
    runner.run("0", &say(0)).await.expect("runs");
    next(&mut by_first, "the first dispatcher at work").await;

    let (second, mut by_second) = Channel::new();
    let running_second = Running::start(quick(Dispatcher::<B>::new(db.pool.clone()).messages(second)));
    for n in 1..=5 {
        runner.run(&n.to_string(), &say(n)).await.expect("runs");
    }
    for _ in 1..=5 {
        next(&mut by_first, "the first dispatcher's deliveries").await;
    }
    assert!(by_second.try_recv().is_err(), "the second sent nothing while the first held the lease");

    running_first.stop().await;
    runner.run("6", &say(6)).await.expect("runs");
    let delivery = next(&mut by_second, "the second dispatcher taking over").await;
    assert_eq!(delivery.outgoing.key(), "k6");
    running_second.stop().await;
    assert!(by_first.try_recv().is_err());
}
