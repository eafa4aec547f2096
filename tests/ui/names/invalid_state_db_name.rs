use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[state(name = "Placed Order")]
    Placed,
}

fn main() {}
