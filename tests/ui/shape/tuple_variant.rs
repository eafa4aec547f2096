use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed { customer: String },
    #[from(Placed)]
    Paid(String),
}

fn main() {}
