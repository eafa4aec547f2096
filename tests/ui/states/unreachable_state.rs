use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    Lost,
}

fn main() {}
