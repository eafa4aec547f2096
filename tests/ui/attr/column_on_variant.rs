use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[column(json)]
    Placed { customer: String },
}

fn main() {}
