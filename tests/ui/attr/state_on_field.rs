use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[state(name = "customer")]
        customer: String,
    },
}

fn main() {}
