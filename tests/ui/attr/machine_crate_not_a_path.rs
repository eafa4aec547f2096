use statefold::Machine;

#[derive(Machine)]
#[machine(crate = "my facade")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
