use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial(yes)]
    Placed,
}

fn main() {}
