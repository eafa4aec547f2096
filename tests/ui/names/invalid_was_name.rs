use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed,
    #[from(Placed)]
    #[state(was = "Settled!")]
    Paid,
}

fn main() {}
