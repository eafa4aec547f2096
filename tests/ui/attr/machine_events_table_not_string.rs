use statefold::Machine;

#[derive(Machine)]
#[machine(events_table = order_events)]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
