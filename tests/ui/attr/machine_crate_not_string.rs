use statefold::Machine;

#[derive(Machine)]
#[machine(crate = statefold)]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
