use statefold::Machine;

#[derive(Machine)]
#[machine(table = "Orders; DROP TABLE users")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
