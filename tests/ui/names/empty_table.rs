use statefold::Machine;

#[derive(Machine)]
#[machine(table = "")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
