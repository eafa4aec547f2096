use statefold::Machine;

#[derive(Machine)]
#[column(json)]
enum Order {
    #[initial]
    Placed { customer: String },
}

fn main() {}
