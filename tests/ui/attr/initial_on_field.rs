use statefold::Machine;

#[derive(Machine)]
enum Order {
    Placed {
        #[initial]
        customer: String,
    },
}

fn main() {}
