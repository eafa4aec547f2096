use statefold::Machine;

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed,
    #[from(Placed)]
    Shipped { tracking: String },
    #[from(Shipped)]
    Delivered,
}

fn deliver(order: statefold::Record<Order, OrderPlaced>) {
    let _ = order.transition(OrderDelivered);
}

fn main() {}
