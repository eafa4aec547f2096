use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[event(version = 0)]
    Placed { customer: String },
}

fn main() {}
