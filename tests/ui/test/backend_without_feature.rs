use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

// `statefold-ui` enables only statefold's default `sqlite` feature.
#[statefold::test(backends(sqlite, postgres))]
async fn placed(orders: Store<Order>) {
    let _ = orders;
}

fn main() {}
