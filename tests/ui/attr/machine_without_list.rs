use statefold::Machine;

#[derive(Machine)]
#[machine = "orders"]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
