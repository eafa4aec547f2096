use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    #[from(Returned)]
    Refunded,
    #[from(Refunded)]
    Returned,
}

fn main() {}
