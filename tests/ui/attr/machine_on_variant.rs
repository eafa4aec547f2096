use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[machine(table = "orders")]
    Placed,
}

fn main() {}
