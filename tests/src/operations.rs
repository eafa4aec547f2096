//! What an operator relies on, on every backend: one run per consumer at a
//! time (a run and a rebuild included), leases on the database's clock,
//! wake-ups whichever way a write commits, stalls that say what holds them,
//! positions that cannot be misread, and a consumer that catches up and stops.
//!
//! Cases that concern one backend only return early on the others, saying so.

use crate::db::TestBackend;
use crate::machines::Order;
use crate::observe;
use crate::streams::{
    all_ids, caught_up, eventually, last_position, placed, quick, seed, seen, setup, Projection, Running,
};
use futures::StreamExt;
use statefold::{Backend, Consumer, Error, Position, Start, Store, StreamOptions};
use std::sync::Arc;
use std::time::Duration;

/// Instantiates every case of the operations suite as a `#[tokio::test]` for one backend.
#[macro_export]
macro_rules! operations_suite {
    ($backend:ty) => {
        $crate::operations_suite!($backend, ignore if any(), "");
    };
    ($backend:ty, ignore if $unset:meta, $why:literal) => {
        $crate::operations_suite!(@cases $backend; $unset; $why;
            a_run_and_a_rebuild_of_one_consumer_exclude_each_other,
            leases_expire_by_the_database_clock,
            a_stalled_stream_names_what_holds_it,
            the_head_without_the_process_privilege_is_a_typed_error,
            a_committed_transaction_wakes_streams,
            stores_over_one_pool_wake_each_other,
            listening_streams_share_one_connection,
            a_transaction_notifies_other_processes_at_its_commit,
            positions_of_another_backend_are_refused,
            catch_up_stops_at_the_end_of_the_log,
        );
    };
    (@cases $backend:ty; $unset:meta; $why:literal; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr($unset, ignore = $why)]
        async fn $case() {
            $crate::operations::$case::<$backend>().await;
        }
    )*};
}

/// How long a test waits for a signal before calling it missing.
const PATIENCE: Duration = Duration::from_secs(20);

/// A stream option that never polls within a test: only wake-ups deliver.
fn wake_ups_only() -> StreamOptions {
    StreamOptions::default().poll_interval(Duration::from_secs(3_600))
}

fn skip<B: Backend>(why: &str) {
    eprintln!("not applicable on {}: {why}", B::NAME);
}

/// Given a consumer that is running, when a rebuild of the same consumer
/// starts, then it waits for the run to stop (no reset under the run's
/// feet), and afterwards replays every event, the ones the run handled
/// meanwhile included.
pub async fn a_run_and_a_rebuild_of_one_consumer_exclude_each_other<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("exclusive").await else { return };
    let events = seed(&store, 4).await;
    let consumer =
        Arc::new(Consumer::new(&store, "exclusive").stream_options(quick()).lease_ttl(Duration::from_millis(1_500)));

    // Given a run that has handled everything
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = {
        let consumer = Arc::clone(&consumer);
        tokio::spawn(async move {
            let mut handler = Projection::new("by_run");
            consumer.run(&mut handler, async { drop(stopped.await) }).await
        })
    };
    caught_up(&*consumer, last_position(&store, events).await).await;

    // When a rebuild of the same consumer starts, and more events come
    let rebuild = {
        let consumer = Arc::clone(&consumer);
        tokio::spawn(async move {
            let mut handler = Projection::new("by_rebuild");
            consumer.rebuild(&mut handler, std::future::pending()).await
        })
    };
    let more = seed(&store, 2).await;
    caught_up(&*consumer, last_position(&store, events + more).await).await;

    // Then the rebuild has not started while the run holds the lease
    assert!(seen(&db, "by_rebuild").await.is_empty(), "the rebuild waits for the run");
    assert_eq!(seen(&db, "by_run").await, all_ids(&db).await, "the run handled every event");

    // And once the run stops, the rebuild replays every event
    let _ = stop.send(());
    run.await.expect("the run ends").expect("the run stops cleanly");
    let replayed = tokio::time::timeout(PATIENCE, rebuild).await.expect("the rebuild ends").expect("joins");
    assert_eq!(replayed.expect("the rebuild succeeds"), (events + more) as u64);
    assert_eq!(seen(&db, "by_rebuild").await, all_ids(&db).await, "the rebuild replayed every event once");
}

/// Given a database whose clock disagrees with the application's (MySQL
/// sessions can be set an hour behind), when a consumer takes its lease,
/// then the lease expires a TTL after the database's now, not the
/// process's: a second instance with another clock can neither steal it
/// early nor see it live forever.
pub async fn leases_expire_by_the_database_clock<B: TestBackend>() {
    let Some((db, _)) = setup::<B>("clock").await else { return };
    let pool = B::skewed_pool(&db.url, 3_600).await.unwrap_or_else(|| db.pool.clone());
    let store = Store::<Order, B>::new(pool.clone());
    let events = seed(&store, 2).await;
    let ttl = Duration::from_secs(600);
    let consumer = Consumer::new(&store, "clocked").stream_options(quick()).lease_ttl(ttl);
    let running = Running::start(consumer, Projection::new("clocked"));
    caught_up(&Consumer::new(&store, "clocked"), last_position(&store, events).await).await;

    // The lease's remaining time, by the database's clock, as the consumer's sessions see it.
    let sql = format!("SELECT expires_at - {} FROM statefold_leases WHERE consumer = 'clocked'", B::CLOCK_MS);
    let left = B::integers(&pool, &sql).await.expect("the lease reads");
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap();
    assert!(
        matches!(left[..], [ms] if ms > 0 && ms <= ttl_ms),
        "the lease ends within its TTL of the database's now; {left:?} ms left of {ttl_ms}"
    );

    // And another instance cannot take it while it lasts
    let other = Consumer::new(&store, "clocked").stream_options(quick()).lease_ttl(ttl);
    let mut handler = Projection::new("clocked_other");
    let stolen = tokio::time::timeout(Duration::from_millis(500), other.catch_up(&mut handler)).await;
    assert!(stolen.is_err(), "a live lease is not taken: {stolen:?}");
    running.stop().await.expect("stops cleanly");
}

/// Given a transaction that stays open after writing (an idle session on
/// PostgreSQL holds the fence, an insert in flight leaves a MySQL hole),
/// and events committed after it, then the consumer stalls, its stall
/// gauge rises, and it warns naming that transaction's session; once the
/// transaction ends, the events are handled.
pub async fn a_stalled_stream_names_what_holds_it<B: TestBackend>() {
    if B::NAME == "SQLite" {
        return skip::<B>("a single writer: no transaction can hold readers back");
    }
    observe::install();
    let Some((db, store)) = setup::<B>("stall").await else { return };
    let events = seed(&store, 2).await;
    let key = format!("stall_{}", std::process::id());
    let options = quick().stall_warning(Duration::from_millis(300)).gap_retry(Duration::from_millis(20));
    let consumer = Consumer::new(&store, key.clone()).stream_options(options);
    let running = Running::start(consumer, Projection::new("stall"));
    caught_up(&Consumer::new(&store, key.clone()), last_position(&store, events).await).await;

    // Given a transaction that writes an event, then stays open
    let mut holder = store.begin().await.expect("begins");
    store.insert_in(&mut holder, placed(99)).await.expect("written, not committed");
    let session = if B::NAME == "PostgreSQL" {
        format!("pid {}", B::integer_in(&mut holder, "SELECT CAST(pg_backend_pid() AS BIGINT)").await)
    } else {
        format!("thread {}", B::integer_in(&mut holder, "SELECT CAST(CONNECTION_ID() AS SIGNED)").await)
    };
    // and an event committed after it
    store.insert(placed(100)).await.expect("committed");

    // Then the consumer stalls, says so in its gauge, and names the session
    let labels = [("consumer", key.as_str())];
    eventually("the stall gauge rises", || async {
        observe::gauge(statefold::stream::metrics::STALLED, &labels).is_some_and(|stalled| stalled > 0.0)
    })
    .await;
    eventually(&format!("a warning naming {session}"), || async {
        observe::log_lines(&key).iter().any(|line| line.contains("stream stalled") && line.contains(&session))
    })
    .await;
    assert_eq!(seen(&db, "stall").await.len(), events, "nothing after the held transaction is handled yet");

    // When the transaction ends, everything is handled and the stall is over
    holder.commit().await.expect("commits");
    caught_up(&Consumer::new(&store, key.clone()), last_position(&store, events + 2).await).await;
    assert_eq!(seen(&db, "stall").await, all_ids(&db).await);
    eventually("the stall gauge falls back to 0", || async {
        observe::gauge(statefold::stream::metrics::STALLED, &labels) == Some(0.0)
    })
    .await;
    running.stop().await.expect("stops cleanly");
}

/// Given a MySQL user without the `PROCESS` privilege, then taking the
/// head, or opening a stream at the head, is an error naming the privilege
/// and what to do instead; a stream from the beginning still works.
pub async fn the_head_without_the_process_privilege_is_a_typed_error<B: TestBackend>() {
    if B::NAME != "MySQL" {
        return skip::<B>("only MySQL's head reads the server's transaction list");
    }
    let Some((db, store)) = setup::<B>("no_process").await else { return };
    seed(&store, 1).await;
    let user = format!("sf_np_{}", std::process::id());
    let database = db.url.rsplit('/').next().expect("a database name").to_owned();
    for sql in [
        format!("DROP USER IF EXISTS '{user}'@'%'"),
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"),
        format!("GRANT ALL ON `{database}`.* TO '{user}'@'%'"),
    ] {
        db.execute(&sql, vec![]).await;
    }
    let (scheme, rest) = db.url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    let restricted = Store::<Order, B>::connect(&format!("{scheme}://{user}:pw@{host}")).await.expect("connects");

    let error = restricted.head().await.unwrap_err();
    assert!(matches!(error, Error::PrivilegeRequired { privilege: "PROCESS", .. }), "{error}");
    assert!(error.to_string().contains("Start::After"), "says what else to do: {error}");
    let mut at_head = restricted.stream(Start::Head);
    assert!(matches!(at_head.next().await, Some(Err(Error::PrivilegeRequired { .. }))));
    let mut from_start = restricted.stream(Start::Beginning);
    assert!(matches!(from_start.next().await, Some(Ok(_))), "reading from a position needs no privilege");
    restricted.pool().close().await;
    db.execute(&format!("DROP USER '{user}'@'%'"), vec![]).await;
}

/// Given a stream that only wakes up (no polling within the test), when a
/// transaction from `Store::begin` with a write in it commits through
/// `tx.commit()`, then the stream wakes and delivers the event.
pub async fn a_committed_transaction_wakes_streams<B: TestBackend>() {
    let Some((_db, store)) = setup::<B>("tx_wakes").await else { return };
    let head = store.head().await.expect("head");
    let mut stream = store.stream_with(Start::After(head), wake_ups_only());
    let mut tx = store.begin().await.expect("begins");
    let order = store.insert_in(&mut tx, placed(1)).await.expect("written");
    // The stream is waiting before the commit.
    let next = tokio::spawn(async move { stream.next().await });
    tx.commit().await.expect("commits");
    let event = tokio::time::timeout(PATIENCE, next).await.expect("woken by the commit").expect("joins");
    assert_eq!(event.expect("an item").expect("decodes").record_id, *order.id());
}

/// Given two stores of one machine over one pool (two parts of a service),
/// when one writes, then the other's streams wake.
pub async fn stores_over_one_pool_wake_each_other<B: TestBackend>() {
    let Some((_db, store)) = setup::<B>("two_stores").await else { return };
    let other = Store::<Order, B>::new(store.pool().clone());
    let head = store.head().await.expect("head");
    let mut stream = store.stream_with(Start::After(head), wake_ups_only());
    let next = tokio::spawn(async move { stream.next().await });
    let order = other.insert(placed(1)).await.expect("written by the other store");
    let event = tokio::time::timeout(PATIENCE, next).await.expect("woken by the other store").expect("joins");
    assert_eq!(event.expect("an item").expect("decodes").record_id, *order.id());
}

/// Given a pool of three connections and ten streams listening for other
/// processes' notifications (PostgreSQL), then they share one listening
/// connection: the pool still serves writes, and a write from another
/// process wakes all ten.
pub async fn listening_streams_share_one_connection<B: TestBackend>() {
    if B::NAME != "PostgreSQL" {
        return skip::<B>("only PostgreSQL notifies other processes");
    }
    let Some((db, _)) = setup::<B>("listeners").await else { return };
    let small = B::pool_options().max_connections(3).connect(&db.url).await.expect("connects");
    let readers = Store::<Order, B>::new(small);
    let writer = Store::<Order, B>::new(B::connect(&db.url).await.expect("connects")).with_notifications(true);
    let head = readers.head().await.expect("head");
    let mut streams = Vec::new();
    for _ in 0..10 {
        let mut stream = readers.stream_with(Start::After(head), wake_ups_only().listen(true));
        streams.push(tokio::spawn(async move { stream.next().await }));
    }
    // The readers' pool still has connections to spare.
    let own = readers.insert(placed(1)).await.expect("the readers' pool serves a write");
    let other = writer.insert(placed(2)).await.expect("another process writes");
    for stream in streams {
        let first = tokio::time::timeout(PATIENCE, stream).await.expect("woken").expect("joins");
        let record = first.expect("an item").expect("decodes").record_id;
        assert!(record == *own.id() || record == *other.id());
    }
}

/// Given a stream in another process that listens (PostgreSQL), when a
/// store with notifications writes inside a caller's transaction and the
/// transaction commits, then that stream wakes: the notification is part
/// of the write's own statement, delivered at commit, with no second
/// connection.
pub async fn a_transaction_notifies_other_processes_at_its_commit<B: TestBackend>() {
    if B::NAME != "PostgreSQL" {
        return skip::<B>("only PostgreSQL notifies other processes");
    }
    let Some((db, _)) = setup::<B>("notify_tx").await else { return };
    let reader = Store::<Order, B>::new(B::connect(&db.url).await.expect("connects"));
    // One connection: a NOTIFY sent after the commit would need a second.
    let one = B::pool_options().max_connections(1).connect(&db.url).await.expect("connects");
    let writer = Store::<Order, B>::new(one).with_notifications(true);
    let head = reader.head().await.expect("head");
    let mut stream = reader.stream_with(Start::After(head), wake_ups_only().listen(true));
    let next = tokio::spawn(async move { stream.next().await });
    let mut tx = writer.begin().await.expect("begins");
    let order = writer.insert_in(&mut tx, placed(1)).await.expect("written");
    tx.commit().await.expect("commits");
    let event = tokio::time::timeout(PATIENCE, next).await.expect("woken by the notification").expect("joins");
    assert_eq!(event.expect("an item").expect("decodes").record_id, *order.id());
}

/// Given a position in another backend's form (an event id alone on
/// PostgreSQL, `tx:id` elsewhere), then a stream refuses to start after it
/// rather than replaying the log from where the misread puts it.
pub async fn positions_of_another_backend_are_refused<B: TestBackend>() {
    let Some((_db, store)) = setup::<B>("positions").await else { return };
    seed(&store, 2).await;
    let foreign: Position = if B::NAME == "PostgreSQL" { "1".parse().unwrap() } else { "7:1".parse().unwrap() };
    let mut stream = store.stream(Start::After(foreign));
    let error = stream.next().await.expect("an item").unwrap_err();
    assert!(matches!(&error, Error::InvalidPosition { backend, .. } if *backend == B::NAME), "{error}");
    // And the positions a stream hands out are accepted back, as text too.
    let first = store.stream(Start::Beginning).next().await.expect("an item").expect("decodes").position;
    let again: Position = first.to_string().parse().expect("parses");
    let next = store.stream(Start::After(again)).next().await.expect("an item").expect("decodes");
    assert!(next.position > first);
}

/// Given events in the log, then `catch_up` handles those after the
/// cursor and returns how many; called again, only the new ones; with
/// nothing new, it returns at once.
pub async fn catch_up_stops_at_the_end_of_the_log<B: TestBackend>() {
    let Some((db, store)) = setup::<B>("catch_up").await else { return };
    let consumer = Consumer::new(&store, "batch").stream_options(quick());
    let mut handler = Projection::new("batch");
    let first = seed(&store, 3).await;
    assert_eq!(consumer.catch_up(&mut handler).await.expect("catches up"), first as u64);
    assert_eq!(seen(&db, "batch").await, all_ids(&db).await);
    let more = seed(&store, 2).await;
    assert_eq!(consumer.catch_up(&mut handler).await.expect("catches up"), more as u64);
    assert_eq!(seen(&db, "batch").await, all_ids(&db).await);
    let nothing = tokio::time::timeout(PATIENCE, consumer.catch_up(&mut handler)).await.expect("returns at once");
    assert_eq!(nothing.expect("catches up"), 0);
}
