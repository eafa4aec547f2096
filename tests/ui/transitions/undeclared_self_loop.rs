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

fn pay_twice(order: statefold::Record<Order, OrderPaid>) {
    let _ = order.transition(OrderPaid { payment_ref: "pi_2".into() });
}

fn main() {}
