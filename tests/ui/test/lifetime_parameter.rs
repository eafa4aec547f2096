use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

#[statefold::test]
async fn placed<'a>(orders: Store<Order>, name: &'a str) {
    let _ = (orders, name);
}

fn main() {}
