use statefold::Machine;

#[derive(Machine)]
#[machine(tabel = "orders")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
