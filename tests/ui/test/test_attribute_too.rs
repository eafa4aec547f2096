use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

#[statefold::test]
#[test]
async fn placed(orders: Store<Order>) {
    let _ = orders;
}

fn main() {}
