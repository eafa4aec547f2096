use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    #[from(Payed)]
    Shipped,
}

fn main() {}
