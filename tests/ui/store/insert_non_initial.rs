use statefold::{Machine, Sqlite, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
    #[from(Placed)]
    Paid { payment_ref: String },
}

fn pay(store: &Store<Order, Sqlite>) {
    let _ = store.insert(OrderPaid { payment_ref: "pi_1".into() });
}

fn main() {}
