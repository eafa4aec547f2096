use statefold::{Machine, Sqlite, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

#[derive(Machine, Clone, Debug, PartialEq)]
enum Ticket {
    #[initial]
    Opened { title: String },
}

fn open(store: &Store<Order, Sqlite>) {
    let _ = store.insert(TicketOpened { title: "broken".into() });
}

fn main() {}
