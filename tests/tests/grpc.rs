//! gRPC streams: auth, TLS and a client that stops reading. These do not
//! depend on the server's database: they run on SQLite. The suite that
//! does (`grpc_{sqlite,postgres,mysql}.rs`) is in `src/grpc.rs`.

use futures::future::BoxFuture;
use futures::StreamExt;
use statefold::remote::grpc::tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use statefold::remote::grpc::{Client, Grant, Server, StreamStats, Tokens, Verifier};
use statefold::{Backoff, Error, Machine, Sqlite, Start, Store};
use statefold_tests::db::TestBackend;
use statefold_tests::grpc::{client, loopback, server, Running, TOKEN};
use statefold_tests::machines::{Order, OrderPlaced};
use statefold_tests::observe;
use std::time::Duration;

async fn orders(test: &str) -> (statefold_tests::db::TestDb<Sqlite>, Store<Order, Sqlite>) {
    let db = Sqlite::create(test).await.expect("SQLite always runs");
    let store = db.store::<Order>().await;
    store.insert(OrderPlaced { customer: "ada".into(), amount_cents: 1 }).await.expect("inserted");
    (db, store)
}

/// The first item of `client`'s stream of `machine`, within 10 s.
async fn first(client: &Client, machine: &str) -> Result<statefold::Envelope<Order>, Error> {
    let mut stream = client.stream_of::<Order>(machine, Start::Beginning);
    tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("an answer within 10 s").expect("an item")
}

/// The error's status message, for a refusal that is final.
fn refusal(result: Result<statefold::Envelope<Order>, Error>) -> String {
    match result {
        Err(Error::Remote { message, retryable: false, .. }) => message,
        other => panic!("expected a final refusal, got {other:?}"),
    }
}

fn quick(endpoint: &str) -> statefold::remote::grpc::ClientBuilder {
    Client::builder(endpoint).backoff(Backoff::new(Duration::from_millis(20), Duration::from_millis(200)))
}

/// Accepts tokens `v1.<name>`, each granting the machine `Order` to `<name>`.
struct Prefixed;

impl Verifier for Prefixed {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Grant>> {
        let grant = token.strip_prefix("v1.").map(|name| Grant::new(name).machine(Order::DEF.name));
        Box::pin(std::future::ready(grant))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_failure_has_its_status_and_no_token_is_ever_shown() {
    observe::install();
    let (_db, store) = orders("grpc_auth").await;
    let wrong = "sf-wrong-5d0c-token";
    let tokens = Tokens::new()
        .token(TOKEN, Grant::new("tests").machine(Order::DEF.name))
        .token("sf-wallets-a11e-token", Grant::new("wallets-only").machine("Wallet"))
        .token("sf-root-88f2-token", Grant::new("root").all_machines());
    let running = Running::start(Server::new(tokens).register(&store).max_streams_per_client(1), loopback()).await;
    let endpoint = running.endpoint();

    // Given the right token, the log.
    assert_eq!(first(&client(&endpoint), Order::DEF.name).await.expect("granted").version, 1);

    // No token, an unknown one: UNAUTHENTICATED.
    let none = refusal(first(&quick(&endpoint).build().unwrap(), Order::DEF.name).await);
    assert!(none.starts_with("UNAUTHENTICATED: missing bearer token"), "{none}");
    let unknown = quick(&endpoint).token(wrong).build().unwrap();
    let message = refusal(first(&unknown, Order::DEF.name).await);
    assert!(message.starts_with("UNAUTHENTICATED: unknown bearer token"), "{message}");
    assert!(!format!("{unknown:?}").contains(wrong), "the client's Debug hides its token");

    // A token for other machines: PERMISSION_DENIED, naming the client, not the token.
    let wallets = quick(&endpoint).token("sf-wallets-a11e-token").build().unwrap();
    let denied = refusal(first(&wallets, Order::DEF.name).await);
    assert_eq!(denied, "PERMISSION_DENIED: client `wallets-only` may not read machine `Order`");

    // A machine not served: NOT_FOUND, for a token that may read any.
    let root = quick(&endpoint).token("sf-root-88f2-token").build().unwrap();
    let missing = refusal(first(&root, "Ledger").await);
    assert_eq!(missing, "NOT_FOUND: machine `Ledger` is not served here");

    // Past the client's limit of streams: RESOURCE_EXHAUSTED, retried until a stream closes.
    let granted = client(&endpoint);
    let mut open = granted.stream::<Order>(Start::Beginning);
    open.next().await.expect("an item").expect("the first stream is served");
    let waiting = tokio::spawn(async move { first(&client(&endpoint), Order::DEF.name).await });
    let refused = async {
        while observe::log_lines("RESOURCE_EXHAUSTED: client `tests` has 1 streams open").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), refused).await.expect("the second stream is refused, and retries");
    assert_eq!(running.monitor.streams().len(), 1, "one stream open: the second was refused");
    drop(open);
    let second = waiting.await.expect("the task ends").expect("served once the first stream closed");
    assert_eq!(second.version, 1);

    // A verifier of one's own.
    let custom = Running::start(Server::new(Prefixed).register(&store), loopback()).await;
    let ok = quick(&custom.endpoint()).token("v1.billing").build().unwrap();
    assert_eq!(first(&ok, Order::DEF.name).await.expect("granted by the verifier").version, 1);
    let bad = quick(&custom.endpoint()).token("v2.billing").build().unwrap();
    assert!(refusal(first(&bad, Order::DEF.name).await).starts_with("UNAUTHENTICATED"));
    custom.stop().await;

    for token in [TOKEN, wrong, "sf-wallets-a11e-token", "sf-root-88f2-token", "v2.billing"] {
        assert_eq!(observe::log_lines(token), Vec::<String>::new(), "no log line shows a token");
    }
    assert!(!observe::log_lines("refused").is_empty(), "refusals are logged (without tokens)");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_certificate_made_for_127_0_0_1() {
    observe::install();
    let (_db, store) = orders("grpc_tls").await;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("a certificate");
    let (cert, key) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(&cert, &key));
    let running = Running::start(server(&store).tls(tls), loopback()).await;
    let endpoint = format!("https://{}", running.addr);

    let trusted = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cert));
    let client = quick(&endpoint).token(TOKEN).tls(trusted).build().expect("a TLS client");
    let envelope = first(&client, Order::DEF.name).await.expect("the log, over TLS");
    assert_eq!(envelope.event, statefold_tests::machines::Order::Placed { customer: "ada".into(), amount_cents: 1 });

    // A client that trusts another authority never reads: the handshake fails, and it says so.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("a certificate");
    let untrusted = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(other.cert.pem()));
    let stranger = quick(&endpoint).token(TOKEN).tls(untrusted).build().expect("a TLS client");
    let mut stream = stranger.stream::<Order>(Start::Beginning);
    let attempt = tokio::time::timeout(Duration::from_millis(1_500), stream.next()).await;
    assert!(attempt.is_err(), "nothing is read over an untrusted connection");
    assert!(
        observe::log_lines(&format!("endpoint={endpoint}")).iter().any(|line| line.contains("interrupted")),
        "the failed handshakes are logged as interruptions"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_costs_the_server_a_bounded_buffer() {
    let db = Sqlite::create("grpc_slow").await.expect("SQLite always runs");
    let store = db.store::<Order>().await;
    // 8,000 events of 4 KiB: 32 MiB, far more than HTTP/2's windows and the sockets hold.
    let total = 8_000_u64;
    let customer = "x".repeat(4_096);
    for chunk in 0..8 {
        let mut tx = store.begin().await.expect("a transaction");
        for n in 0..1_000 {
            let placed = OrderPlaced { customer: customer.clone(), amount_cents: chunk * 1_000 + n };
            store.insert_in(&mut tx, placed).await.expect("inserted");
        }
        tx.commit().await.expect("committed");
    }
    let (batch, buffer) = (50_u64, 3_usize);
    let running = Running::start(server(&store).batch_size(batch as u32).buffer(buffer), loopback()).await;
    let client = client(&running.endpoint());
    let mut stream = client.stream::<Order>(Start::Beginning);
    assert_eq!(stream.next().await.expect("an item").expect("an event").record_id, 1);

    // The client reads no more: the stream's queue fills up, then nothing
    // moves (absence has no signal: it is sampled, 300 ms apart).
    let settled = async {
        let mut previous: Option<StreamStats> = None;
        loop {
            let streams = running.monitor.streams();
            assert!(streams.iter().all(|s| s.queued <= s.capacity), "never more than the buffer: {streams:?}");
            let now = streams.first().cloned().expect("the stream is open");
            if now.queued == now.capacity && previous.as_ref().is_some_and(|p| p.events_read == now.events_read) {
                break now;
            }
            previous = Some(now);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let stalled = tokio::time::timeout(Duration::from_secs(30), settled).await.expect("the stream stalls within 30 s");
    assert_eq!(stalled.capacity, buffer);
    assert!(
        stalled.events_read < total / 2,
        "the server read {} of {total} events for a client that took 1",
        stalled.events_read
    );

    // Reading again, the client gets every event, in order.
    let mut last = 1;
    let rest = async {
        while last < total as i64 {
            let envelope = stream.next().await.expect("an item").expect("an event");
            assert_eq!(envelope.record_id, last + 1, "in order, none missing");
            last = envelope.record_id;
            let streams = running.monitor.streams();
            assert!(streams.iter().all(|s| s.queued <= s.capacity), "never more than the buffer: {streams:?}");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), rest).await.expect("the rest within 60 s");
    drop(stream);
    running.stop().await;
}
