use statefold::Machine;

#[derive(Machine)]
#[machine(crate = "statefold", crate = "sf")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
