use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

struct Suite;

impl Suite {
    #[statefold::test]
    async fn placed(self, orders: Store<Order>) {
        let _ = orders;
    }
}

fn main() {}
