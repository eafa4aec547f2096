use statefold::{Machine, Sqlite, Store};

/// Keyed by the caller.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(id = uuid::Uuid)]
enum Upload {
    #[initial]
    Started { name: String },
}

fn start(store: &Store<Upload, Sqlite>) {
    let _ = store.insert(UploadStarted { name: "a.png".into() });
}

fn main() {}
