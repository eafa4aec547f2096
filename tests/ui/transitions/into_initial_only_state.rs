use statefold::Machine;

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

fn reopen(order: statefold::Record<Order, OrderCancelled>) {
    let _ = order.transition(OrderPlaced { customer: "ada".into() });
}

fn main() {}
