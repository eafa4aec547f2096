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

#[derive(Machine, Clone, Debug, PartialEq)]
enum Invoice {
    #[initial]
    Issued { number: String },
    #[from(Issued)]
    Paid { payment_ref: String },
}

fn pay(order: statefold::Record<Order, OrderPlaced>) {
    let _ = order.transition(InvoicePaid { payment_ref: "pi_1".into() });
}

fn main() {}
