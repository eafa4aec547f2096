use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[state(db = "placed")]
    Placed,
}

fn main() {}
