use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    #[from(Placed)]
    #[state(name = "placed")]
    Paid,
}

fn main() {}
