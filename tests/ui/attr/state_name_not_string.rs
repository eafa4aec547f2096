use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[state(name = placed)]
    Placed,
}

fn main() {}
