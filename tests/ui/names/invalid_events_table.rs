use statefold::Machine;

#[derive(Machine)]
#[machine(events_table = "order-events")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
