use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    #[from(Order::Placed)]
    Paid,
}

fn main() {}
