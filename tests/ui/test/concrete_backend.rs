use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

#[statefold::test]
async fn placed(orders: Store<Order, statefold::Sqlite>) {
    let _ = orders;
}

fn main() {}
