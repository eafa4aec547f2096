use statefold::Machine;

#[derive(Machine)]
#[machine(table = orders)]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
