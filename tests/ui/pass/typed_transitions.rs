use statefold::{Machine, Metadata, Record, Transition};

/// An order's life.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
    #[from(Placed)]
    Paid { payment_ref: String },
    #[from(Paid)]
    Shipped { tracking: String },
    #[from(Placed, Paid)]
    Cancelled { reason: String },
}

fn cancel_placed(order: Record<Order, OrderPlaced>) -> Transition<Order, OrderCancelled> {
    order.transition(OrderCancelled { reason: "changed mind".into() })
}

fn cancel_paid(order: Record<Order, OrderPaid>) -> Transition<Order, OrderCancelled> {
    order.transition(OrderCancelled { reason: "out of stock".into() }).with_metadata(Metadata::new().actor("ops"))
}

fn on_load(state: OrderState) -> Option<Transition<Order, OrderShipped>> {
    match state {
        OrderState::Paid(order) => Some(order.transition(OrderShipped { tracking: "1Z".into() })),
        OrderState::Placed(_) | OrderState::Shipped(_) | OrderState::Cancelled(_) => None,
    }
}

fn main() {
    let _ = (cancel_placed, cancel_paid, on_load);
}
