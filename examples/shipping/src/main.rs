//! The shipping service: another service than orders, with a database of
//! its own. It reads the orders service's event log over gRPC (not its
//! database), typed by the same `Order` declaration (the `orders` crate),
//! and ships each paid order exactly once: the shipment row and the
//! consumer's cursor are written in one transaction of its own SQLite.
//!
//! Run the orders service first, then this, side by side:
//!
//! ```sh
//! cargo run -p orders -- serve     # terminal 1: places and pays orders, serves its log
//! cargo run -p shipping            # terminal 2: ships the paid ones
//! ```
//!
//! Stop and start either: shipping resumes where its cursor is (in
//! `shipping.db`), with backoff while orders is away, and ships nothing
//! twice. Settings: `SHIPPING_ORDERS_URL` (default `http://127.0.0.1:50051`),
//! `ORDERS_SHIPPING_TOKEN` (default `dev-shipping-token`),
//! `SHIPPING_DATABASE_URL` (default `sqlite:shipping.db`).

use orders::{Order, OrderStatus};
use statefold::remote::grpc::Client;
use statefold::sqlx;
use statefold::{Consumer, Envelope, Handler, HandlerError, Sqlite, Store, Tx};
use std::process::ExitCode;

/// Ships paid orders: one row per order in `shipments`.
struct Ship;

impl Handler<Order, Sqlite> for Ship {
    async fn handle(&mut self, tx: &mut Tx<'static, Sqlite>, event: &Envelope<Order>) -> Result<(), HandlerError> {
        let Order::Paid { payment_ref } = &event.event else { return Ok(()) };
        let tracking = format!("1Z{:08}", event.record_id);
        sqlx::query("INSERT INTO shipments (order_id, payment_ref, tracking, shipped_at) VALUES (?, ?, ?, ?)")
            .bind(event.record_id)
            .bind(payment_ref)
            .bind(&tracking)
            .bind(event.created_at)
            .execute(&mut **tx)
            .await?;
        println!("shipping: order {} (paid with {payment_ref}) shipped as {tracking}", event.record_id);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let orders_url = env("SHIPPING_ORDERS_URL", "http://127.0.0.1:50051");
    let token = env("ORDERS_SHIPPING_TOKEN", "dev-shipping-token");
    let database = env("SHIPPING_DATABASE_URL", "sqlite:shipping.db");

    // The local database: the consumer's tables and the shipments, not the orders'.
    let local = Store::<Order, Sqlite>::connect(&database).await?;
    local.create_support_tables().await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS shipments (order_id INTEGER PRIMARY KEY, payment_ref TEXT NOT NULL, \
         tracking TEXT NOT NULL, shipped_at TEXT NOT NULL)",
    )
    .execute(local.pool())
    .await?;

    let client = Client::builder(orders_url.as_str()).token(token).build()?;
    let consumer = Consumer::with_source(&local, "shipping", client.source::<Order>()).kinds([OrderStatus::Paid]);
    println!("shipping: reading orders from {orders_url}, from position {}; Ctrl-C stops", consumer.position().await?);
    consumer.run(&mut Ship, async { tokio::signal::ctrl_c().await.unwrap_or(()) }).await?;
    let shipped: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shipments").fetch_one(local.pool()).await?;
    println!("shipping: stopped; {shipped} orders shipped so far");
    Ok(())
}
