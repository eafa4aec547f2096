//! Event streams between services over gRPC: written once against
//! [`TestBackend`] for the server's database and run on every backend by
//! [`grpc_suite!`](crate::grpc_suite!); the consumer's own database is
//! always SQLite, as in a service of its own. Auth, TLS and back-pressure,
//! which do not depend on the server's backend, are in `tests/grpc.rs`.

use crate::db::{Arg, TestBackend, TestDb};
use crate::machines::{Order, OrderPaid};
use crate::streams::{placed, setup, Dice};
use futures::StreamExt;
use statefold::remote::grpc::{Client, Grant, Monitor, Server, Tokens, TransportError};
use statefold::{Backoff, Consumer, Envelope, Handler, HandlerError, Machine, Sqlite, Start, Store, StreamOptions, Tx};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The token of the tests' client, allowed `Order`.
pub const TOKEN: &str = "sf-test-7c1e9b2a-token";

/// Instantiates every case of the gRPC suite as a `#[tokio::test]` for one backend.
#[macro_export]
macro_rules! grpc_suite {
    ($backend:ty) => {
        $crate::grpc_suite!($backend, ignore if any(), "");
    };
    ($backend:ty, ignore if $unset:meta, $why:literal) => {
        $crate::grpc_suite!(@cases $backend; $unset; $why;
            remote_stream_equals_the_local_stream_under_concurrent_writers,
            remote_consumer_resumes_after_a_server_restart_exactly_once,
        );
    };
    (@cases $backend:ty; $unset:meta; $why:literal; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr($unset, ignore = $why)]
        async fn $case() {
            $crate::grpc::$case::<$backend>().await;
        }
    )*};
}

/// A server running on 127.0.0.1 until stopped.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its streams.
    pub monitor: Monitor,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), TransportError>>,
}

impl Running {
    /// Serves `server` on `addr` (port 0: any free port).
    ///
    /// # Panics
    /// When the address cannot be bound.
    pub async fn start(server: Server, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("a port on 127.0.0.1");
        let addr = listener.local_addr().expect("its address");
        let monitor = server.monitor();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Self { addr, monitor, stop, task }
    }

    /// `http://` and the address.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts down gracefully: returns once every stream ended and the server stopped.
    ///
    /// # Panics
    /// When the server fails or takes more than 10 s.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops within 10 s")
            .expect("the server task ends")
            .expect("the server ends cleanly");
    }
}

/// Any free port on 127.0.0.1.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A client with the tests' token and a quick backoff.
///
/// # Panics
/// When the endpoint is not a URL.
pub fn client(endpoint: &str) -> Client {
    Client::builder(endpoint)
        .token(TOKEN)
        .backoff(Backoff::new(Duration::from_millis(20), Duration::from_millis(200)))
        .build()
        .expect("a client")
}

/// A server of `store`'s orders to the tests' token.
pub fn server<B: TestBackend>(store: &Store<Order, B>) -> Server {
    let tokens = Tokens::new().token(TOKEN, Grant::new("tests").machine(Order::DEF.name));
    let options =
        StreamOptions::default().poll_interval(Duration::from_millis(100)).gap_grace(Duration::from_millis(200));
    Server::new(tokens)
        .register_as(Order::DEF.name, store, options)
        .batch_size(50)
        .heartbeat(Duration::from_millis(500))
}

/// Over gRPC, under concurrent writers (with delays inside their
/// transactions and rollbacks), a client receives exactly what a local
/// stream of the same log delivers: the same envelopes, in the same order.
pub async fn remote_stream_equals_the_local_stream_under_concurrent_writers<B: TestBackend>() {
    let Some((_db, store)) = setup::<B>("grpc_equal").await else { return };
    let running = Running::start(server(&store), loopback()).await;
    let client = client(&running.endpoint());
    let local = store.stream_with(Start::Beginning, StreamOptions::default().gap_grace(Duration::from_millis(200)));
    let remote = client.stream::<Order>(Start::Beginning);

    let rounds = if B::NAME == "SQLite" { 40 } else { 120 };
    let writers: Vec<_> = (0..6_u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut dice = Dice(0x2545_f491_4f6c_dd1d ^ (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut committed = 0;
                for n in 0..rounds {
                    let mut tx = store.begin().await.expect("a transaction");
                    let order = store.insert_in(&mut tx, placed(n)).await.expect("inserted");
                    let mut written = 1;
                    if dice.next(2) == 0 {
                        store
                            .apply_in(&mut tx, order.transition(OrderPaid { payment_ref: format!("w{w} n{n}") }))
                            .await
                            .expect("paid");
                        written += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(dice.next(6))).await;
                    if dice.next(10) == 0 {
                        tx.rollback().await.expect("rolled back");
                    } else {
                        tx.commit().await.expect("committed");
                        committed += written;
                    }
                }
                committed
            })
        })
        .collect();
    let mut committed = 0;
    for writer in writers {
        committed += writer.await.expect("the writer ends");
    }
    assert!(committed > 100, "enough events to mean something: {committed}");

    let take = |stream: statefold::EventStream<Order>| async move {
        let events: Vec<Envelope<Order>> = tokio::time::timeout(
            Duration::from_secs(60),
            stream.take(committed).map(|item| item.expect("every event arrives and decodes")).collect(),
        )
        .await
        .expect("every committed event within 60 s");
        events
    };
    let (local, remote) = tokio::join!(take(local), take(remote));
    assert_eq!(remote.len(), committed);
    assert!(remote.windows(2).all(|w| w[0].position < w[1].position), "positions strictly increase");
    assert_eq!(remote, local, "over gRPC, the same envelopes in the same order");
    running.stop().await;
}

/// Rows of the projection a remote consumer writes in its own database.
#[derive(Clone)]
struct Shipments;

impl Handler<Order, Sqlite> for Shipments {
    async fn handle(&mut self, tx: &mut Tx<'static, Sqlite>, event: &Envelope<Order>) -> Result<(), HandlerError> {
        let sql = "INSERT INTO projected (position, record_id, version) VALUES (?, ?, ?)";
        let args = vec![Arg::Text(event.position.to_string()), Arg::I64(event.record_id), Arg::I64(event.version)];
        <Sqlite as TestBackend>::run_in(tx, sql, args).await?;
        Ok(())
    }
}

/// A consumer in another service reads the log over gRPC into its own
/// SQLite database (which has the shared tables, not the orders'). The
/// server is stopped mid-stream while writes go on, and started again on
/// the same port: the consumer resumes from its cursor, and its
/// projection holds every event exactly once.
pub async fn remote_consumer_resumes_after_a_server_restart_exactly_once<B: TestBackend>() {
    let Some((_db, store)) = setup::<B>("grpc_restart").await else { return };
    let local_db = <Sqlite as TestBackend>::create("grpc_restart_local").await.expect("SQLite always runs");
    let local: Store<Order, Sqlite> = local_db.bare_store();
    local.create_support_tables().await.expect("shared tables");
    local_db
        .execute(
            "CREATE TABLE projected (position TEXT NOT NULL, record_id BIGINT NOT NULL, version BIGINT NOT NULL)",
            vec![],
        )
        .await;

    let running = Running::start(server(&store), loopback()).await;
    let addr = running.addr;
    let client = client(&running.endpoint());
    let consumer = Consumer::with_source(&local, "shipping", client.source::<Order>())
        .stream_options(StreamOptions::default().batch_size(20))
        .backoff(Backoff::new(Duration::from_millis(20), Duration::from_millis(200)));
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        consumer
            .run(&mut Shipments, async {
                let _ = stopped.await;
            })
            .await
    });

    let count = |db: &TestDb<Sqlite>| {
        let pool = db.pool.clone();
        async move { <Sqlite as TestBackend>::integers(&pool, "SELECT COUNT(*) FROM projected").await.expect("a count")[0] }
    };
    let until = |n: i64| {
        let db = &local_db;
        async move {
            let reached = async {
                while count(db).await < n {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(60), reached)
                .await
                .unwrap_or_else(|_| panic!("the projection reaches {n} events within 60 s"));
        }
    };

    let mut written = 0_i64;
    let write = |store: Store<Order, B>, from: i64, n: i64| async move {
        let mut events = 0;
        for i in from..from + n {
            let order = store.insert(placed(i)).await.expect("inserted");
            events += 1;
            if i % 2 == 0 {
                store.apply(order.transition(OrderPaid { payment_ref: format!("pay {i}") })).await.expect("paid");
                events += 1;
            }
        }
        events
    };
    written += write(store.clone(), 0, 30).await;
    until(written).await;

    // Mid-stream: writes go on while the server is down, and after it is back.
    running.stop().await;
    written += write(store.clone(), 30, 20).await;
    let running = Running::start(server(&store), addr).await;
    written += write(store.clone(), 50, 20).await;
    until(written).await;

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the consumer stops")
        .expect("its task ends")
        .expect("the run ends cleanly");
    running.stop().await;

    let rows = <Sqlite as TestBackend>::integers(&local_db.pool, "SELECT record_id * 10 + version FROM projected")
        .await
        .expect("rows");
    let distinct: BTreeSet<i64> = rows.iter().copied().collect();
    assert_eq!(rows.len() as i64, written, "every event once: none missing, none twice");
    assert_eq!(distinct.len(), rows.len(), "no event twice");
    let all: Vec<Envelope<Order>> = store.stream(Start::Beginning).take(rows.len()).map(Result::unwrap).collect().await;
    let expected: BTreeSet<i64> = all.iter().map(|e| e.record_id * 10 + e.version).collect();
    assert_eq!(distinct, expected, "exactly the server's events");
    let saved = Consumer::with_source(&local, "shipping", client.source::<Order>()).position().await.expect("cursor");
    assert_eq!(saved, all.last().expect("events").position, "the cursor, in the local database, at the last event");
    let orders_table = <Sqlite as TestBackend>::integers(&local_db.pool, "SELECT COUNT(*) FROM orders").await;
    assert!(orders_table.is_err(), "the consumer's database has no table of the remote machine");
}
