use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[event(version = 2)]
        customer: String,
    },
}

fn main() {}
