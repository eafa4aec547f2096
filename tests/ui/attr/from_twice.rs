use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    #[from(Placed)]
    Paid,
    #[from(Placed)]
    #[from(Paid)]
    Cancelled,
}

fn main() {}
