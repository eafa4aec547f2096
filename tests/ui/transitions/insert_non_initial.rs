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

fn insert<E: statefold::Initial>(event: E) -> E {
    event
}

fn main() {
    let _ = insert(OrderShipped { tracking: "1Z".into() });
}
