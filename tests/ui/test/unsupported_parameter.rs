use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

#[statefold::test]
async fn placed(orders: Store<Order>, pool: statefold::sqlx::SqlitePool) {
    let _ = (orders, pool);
}

fn main() {}
