use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    #[from()]
    Paid,
}

fn main() {}
