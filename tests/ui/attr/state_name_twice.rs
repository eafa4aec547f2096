use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[state(name = "placed", name = "new")]
    Placed,
}

fn main() {}
