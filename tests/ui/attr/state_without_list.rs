use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[state = "placed"]
    Placed,
}

fn main() {}
