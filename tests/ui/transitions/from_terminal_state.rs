use statefold::Machine;

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed,
    #[from(Placed)]
    Delivered,
    #[from(Placed)]
    Cancelled { reason: String },
}

fn cancel(order: statefold::Record<Order, OrderDelivered>) {
    let _ = order.transition(OrderCancelled { reason: "late".into() });
}

fn main() {}
