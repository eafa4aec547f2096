//! An order's life, declared once and persisted on embedded SQLite: insert,
//! typed transitions, history, the record as of a past time, the audit, and
//! what an illegal transition requested at run time looks like.
//!
//! Run with `cargo run -p orders` (no server needed: the database lives in memory).
//!
//! `cargo run -p orders -- serve` is the orders service instead: it keeps
//! its orders in `orders.db` (SQLite, in the current directory; or
//! `ORDERS_DATABASE_URL`), places and pays an order every two seconds, and
//! serves the order log over gRPC on 127.0.0.1:50051 (or `ORDERS_GRPC_ADDR`)
//! to clients presenting the token in `ORDERS_SHIPPING_TOKEN` (default
//! `dev-shipping-token`). `cargo run -p shipping` consumes it.
//!
//! With arguments it is the service's schema tool instead (`statefold::cli`):
//! `cargo run -p orders -- --help`, `cargo run -p orders -- diagram`, or
//! `cargo run -p orders -- migrations generate --dialect postgres --dir examples/orders/migrations`.

use orders::{Order, OrderPaid, OrderPlaced, OrderShipped};
use statefold::cli::Cli;
use statefold::remote::grpc::{Grant, Server, Tokens};
use statefold::{Machine, Metadata, Sqlite, Status, Store};
use std::process::ExitCode;
use std::time::Duration;

/// The schema tool over this service's machines.
fn cli() -> Cli {
    Cli::new("orders").machine::<Order>()
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return report(serve().await);
    }
    if std::env::args_os().len() > 1 {
        return cli().run().await;
    }
    report(demo().await.map_err(Into::into))
}

fn report(result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The orders service: a shop placing and paying orders, and the order
/// log served over gRPC, until Ctrl-C.
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("ORDERS_DATABASE_URL").unwrap_or_else(|_| "sqlite:orders.db".to_owned());
    let addr = std::env::var("ORDERS_GRPC_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".to_owned()).parse()?;
    let token = std::env::var("ORDERS_SHIPPING_TOKEN").unwrap_or_else(|_| "dev-shipping-token".to_owned());
    let store = Store::<Order, Sqlite>::connect(&url).await?;
    store.create_tables().await?;

    let tokens = Tokens::new().token(token, Grant::new("shipping").machine(Order::DEF.name));
    let server = Server::new(tokens).register(&store);
    println!("orders: serving the {} log on {addr} (gRPC, statefold.stream.v1); Ctrl-C stops", Order::DEF.name);
    let shop = tokio::spawn(shop(store));
    server.serve_at(addr, async { tokio::signal::ctrl_c().await.unwrap_or(()) }).await?;
    shop.abort();
    Ok(())
}

/// Places an order every two seconds; pays two of three, ships none (that
/// is the shipping service's business).
async fn shop(store: Store<Order, Sqlite>) -> Result<(), statefold::Error> {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    for n in 1_i64.. {
        tick.tick().await;
        let placed = store.insert(OrderPlaced { customer: format!("customer {n}"), amount_cents: 100 * n }).await?;
        let id = *placed.id();
        if n % 3 == 0 {
            println!("orders: placed order {id}, awaiting payment");
            continue;
        }
        let payment = OrderPaid { payment_ref: format!("pay_{n:04}") };
        store.apply(placed.transition(payment).with_metadata(Metadata::new().actor("payments"))).await?;
        println!("orders: placed and paid order {id}");
    }
    Ok(())
}

async fn demo() -> Result<(), statefold::Error> {
    let def = Order::DEF;
    let store = Store::<Order, Sqlite>::connect("sqlite::memory:").await?;
    store.create_tables().await?;
    println!("== {}: tables `{}` and `{}` on in-memory SQLite\n", def.name, def.table, def.events_table);

    // Each write is a guarded row change plus its event, in one transaction.
    let placed = store.insert(OrderPlaced { customer: "Ada".into(), amount_cents: 4200 }).await?;
    let id = *placed.id();
    println!(
        "placed   order {id} for {}, {} cents (version {})",
        placed.row().customer,
        placed.row().amount_cents,
        placed.version()
    );

    let payment = OrderPaid { payment_ref: "pay_7Hq2".into() };
    let paid = store.apply(placed.transition(payment).with_metadata(Metadata::new().actor("payments"))).await?;
    println!("paid     with {} (version {})", paid.row().payment_ref.as_deref().unwrap_or("?"), paid.version());

    // Only declared edges compile: `paid.transition(OrderPaid { .. })` would not.
    let shipped = store.apply(paid.transition(OrderShipped { tracking: "1Z999AA1".into() })).await?;
    println!("shipped  as {} (version {})", shipped.row().tracking.as_deref().unwrap_or("?"), shipped.version());

    println!("\n== history of order {id}");
    let history = store.history(&id).await?;
    for event in &history {
        let from = event.from.map_or("(new)", |s| s.name());
        let actor = event.metadata.actor.as_deref().unwrap_or("-");
        println!(
            "  #{} v{} {:>6} -> {:<7} at {} by {:<8} {:?}",
            event.position,
            event.version,
            from,
            event.to.name(),
            event.created_at.format("%H:%M:%S%.6f"),
            actor,
            event.event
        );
    }

    let when_paid = history[1].created_at;
    if let Some(then) = store.as_of(&id, when_paid).await? {
        println!("\n== as of {} (the fold of its events up to then)", when_paid.format("%H:%M:%S%.6f"));
        println!("  status {}, payment {:?}, tracking {:?}", then.status.name(), then.payment_ref, then.tracking);
    }

    println!("\n== {}", store.audit().await?);

    // A target known only at run time (from an HTTP request, say) is checked
    // against the declaration: an illegal edge is an error, not a panic.
    println!("\n== paying order {id} again, as requested at run time");
    let again = Order::Paid { payment_ref: "pay_again".into() };
    match store.transition(&id, again, Metadata::new().actor("api")).await {
        Ok(state) => println!("  unexpectedly allowed: {:?}", state.status()),
        Err(error) => println!("  refused: {error}"),
    }
    let current = store.load(&id).await?;
    println!("  order {id} is still {} at version {}", current.status().name(), current.row().version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use orders::Order;
    use statefold::migrate::Migrations;
    use statefold::{Machine, MySql, Postgres, Sqlite};
    use std::path::Path;

    /// The committed migrations reach exactly the schema the code declares:
    /// a changed `Order` without `migrations generate` fails here.
    #[test]
    fn committed_migrations_match_the_declaration() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        Migrations::<Sqlite>::new(&root).check(&[Order::DEF]).unwrap();
        Migrations::<Postgres>::new(&root).check(&[Order::DEF]).unwrap();
        Migrations::<MySql>::new(&root).check(&[Order::DEF]).unwrap();
    }
}
