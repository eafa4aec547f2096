//! The orders machine's rules, without a database and on every backend.

use statefold::testing::given;
use statefold::{Error, Machine, Record, Store};

/// An order's life (in your crate, `use my_service::Order;` instead).
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "orders")]
enum Order {
    #[initial]
    Placed { customer: String, amount_cents: i64 },
    #[from(Placed)]
    Paid { payment_ref: String },
    #[from(Paid)]
    Shipped { tracking: String },
    #[from(Placed, Paid)]
    Cancelled { reason: String },
}

fn placed() -> Order {
    Order::Placed { customer: "ada".into(), amount_cents: 4200 }
}

fn paid() -> Order {
    Order::Paid { payment_ref: "pi_1".into() }
}

/// Given a paid order, when shipped, then one event, and it is shipped.
#[test]
fn a_paid_order_ships() {
    given([placed(), paid()])
        .when(|order: Record<Order, OrderPaid>| order.transition(OrderShipped { tracking: "1Z".into() }))
        .then([Order::Shipped { tracking: "1Z".into() }])
        .state(OrderStatus::Shipped)
        .row(|row| assert_eq!(row.payment_ref.as_deref(), Some("pi_1")));
}

/// A command from a request: an order that is not paid cannot ship.
#[test]
fn an_unpaid_order_does_not_ship() {
    given([placed()])
        .when_dynamic(Order::Shipped { tracking: "1Z".into() })
        .then_error(|e| matches!(e, Error::InvalidTransition { from: "Placed", to: "Shipped", .. }));
}

/// The same rules on SQLite, PostgreSQL and MySQL, each in a database of its own.
#[statefold::test]
async fn orders_on_every_backend(orders: Store<Order>) -> Result<(), Error> {
    given([placed(), paid()])
        .when_dynamic(Order::Cancelled { reason: "late".into() })
        .on(&orders)
        .await
        .then([Order::Cancelled { reason: "late".into() }])
        .state(OrderStatus::Cancelled);

    let order = orders.insert(OrderPlaced { customer: "bob".into(), amount_cents: 100 }).await?;
    let stale = order.clone().transition(OrderPaid { payment_ref: "pi_2".into() });
    orders.apply(order.transition(OrderCancelled { reason: "changed mind".into() })).await?;
    assert!(matches!(orders.apply(stale).await, Err(Error::Conflict { .. })));
    assert!(orders.audit().await?.is_clean());
    Ok(())
}
