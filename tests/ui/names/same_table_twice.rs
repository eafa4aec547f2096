use statefold::Machine;

#[derive(Machine)]
#[machine(table = "orders", events_table = "orders")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
