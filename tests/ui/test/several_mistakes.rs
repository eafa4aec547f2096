use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

// Every mistake is reported at once.
#[statefold::test(backends(oracle), retries = 3)]
fn placed(orders: &Store<Order>, count: u32) {
    let _ = (orders, count);
}

fn main() {}
