//! A relay process for the JetStream suite's SIGKILL test: relays the
//! orders log of one database to one stream until killed.
//!
//! ```text
//! nats_relay <SQLite|PostgreSQL|MySQL> <database url> <nats url> <stream> <prefix>
//! ```

use statefold::remote::nats::{async_nats, Relay, StreamConfig};
use statefold::{Backend, Backoff, MySql, Postgres, Sqlite, Store, StreamOptions};
use statefold_tests::db::TestBackend;
use statefold_tests::machines::Order;
use std::time::Duration;

async fn relay<B: TestBackend>(url: &str, nats: &str, stream: &str, prefix: &str) {
    let pool = B::connect(url).await.expect("the database opens");
    let store = Store::<Order, B>::new(pool);
    let client = async_nats::connect(nats).await.expect("NATS is reachable");
    let relay = Relay::new(&store, client, StreamConfig::new(stream).prefix(prefix))
        .window(32)
        .lease_ttl(Duration::from_millis(600))
        .backoff(Backoff::new(Duration::from_millis(5), Duration::from_millis(50)))
        .stream_options(StreamOptions::default().batch_size(16).poll_interval(Duration::from_millis(50)));
    relay.run(std::future::pending()).await.expect("the relay runs until killed");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, url, nats, stream, prefix] = args.as_slice() else {
        panic!("usage: nats_relay <backend> <database url> <nats url> <stream> <prefix>");
    };
    match backend.as_str() {
        n if n == Sqlite::NAME => relay::<Sqlite>(url, nats, stream, prefix).await,
        n if n == Postgres::NAME => relay::<Postgres>(url, nats, stream, prefix).await,
        n if n == MySql::NAME => relay::<MySql>(url, nats, stream, prefix).await,
        other => panic!("unknown backend `{other}`"),
    }
}
