use statefold::{Machine, Sqlite, Store, Tx};

/// Keyed by the caller.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(id = String)]
enum Account {
    #[initial]
    Opened { owner: String },
}

fn open(store: &Store<Account, Sqlite>, tx: &mut Tx<'_, Sqlite>) {
    let _ = store.insert_in(tx, AccountOpened { owner: "ada".into() });
}

fn main() {}
