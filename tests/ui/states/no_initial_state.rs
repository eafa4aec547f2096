use statefold::Machine;

#[derive(Machine)]
enum Order {
    Placed,
    #[from(Placed)]
    Paid,
}

fn main() {}
