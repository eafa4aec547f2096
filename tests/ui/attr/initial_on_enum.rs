use statefold::Machine;

#[derive(Machine)]
#[initial]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
