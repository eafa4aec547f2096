use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed { status: String },
}

fn main() {}
