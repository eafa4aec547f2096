use statefold::{Machine, Record};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed,
    #[from(Placed)]
    Paid,
}

/// Generic over the source: not every state may be left for `Paid`.
fn pay<S>(order: Record<Order, S>) {
    let _ = order.transition(OrderPaid);
}

fn main() {}
