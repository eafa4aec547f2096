use statefold::Machine;

#[derive(Machine)]
struct Order {
    customer: String,
}

fn main() {}
