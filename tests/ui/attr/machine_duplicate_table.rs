use statefold::Machine;

#[derive(Machine)]
#[machine(table = "orders", table = "purchases")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
