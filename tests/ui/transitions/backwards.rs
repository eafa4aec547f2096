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

fn pay_again(order: statefold::Record<Order, OrderShipped>) {
    let _ = order.transition(OrderPaid { payment_ref: "pi_1".into() });
}

fn main() {}
