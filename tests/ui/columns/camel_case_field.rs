use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[allow(non_snake_case)]
    Placed { customerName: String },
}

fn main() {}
