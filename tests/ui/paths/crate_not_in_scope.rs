use statefold::Machine;

/// `sf` is no dependency of this crate, nor an item in scope.
#[derive(Machine)]
#[machine(crate = "sf")]
enum Order {
    #[initial]
    Placed { customer: String },
    #[from(Placed)]
    Paid,
}

fn main() {}
