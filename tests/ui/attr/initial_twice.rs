use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[initial]
    Placed,
}

fn main() {}
