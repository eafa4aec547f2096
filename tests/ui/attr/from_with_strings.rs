use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    #[from("Placed")]
    Paid,
}

fn main() {}
