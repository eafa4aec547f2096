use statefold::Machine;

/// A facade module that forgot to re-export statefold.
mod facade {}

#[derive(Machine)]
#[machine(crate = "crate::facade")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
