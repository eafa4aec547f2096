use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    #[from(Placed, Placed)]
    Paid,
}

fn main() {}
