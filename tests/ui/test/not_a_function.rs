use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

#[statefold::test]
struct Placed {
    orders: Store<Order>,
}

fn main() {}
