use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

#[statefold::test]
async fn placed<B, C>(orders: Store<Order, B>, other: Store<Order, C>) {
    let _ = (orders, other);
}

fn main() {}
