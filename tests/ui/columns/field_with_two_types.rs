use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed { amount: i64 },
    #[from(Placed)]
    Refunded { amount: String },
}

fn main() {}
