use statefold::Machine;

/// A facade: a crate (here a module) that re-exports statefold to its users.
mod facade {
    pub use statefold as engine;
}

/// Declared through the facade's path.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(crate = "crate::facade::engine")]
enum Parcel {
    #[initial]
    Sent { to: String },
    #[from(Sent)]
    Received,
}

fn main() {
    assert_eq!(Parcel::DEF.table, "parcel");
    assert_eq!(ParcelStatus::Received.to_string(), "Received");
}
