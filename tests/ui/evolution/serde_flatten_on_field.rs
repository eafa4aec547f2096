use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        customer: String,
        #[serde(flatten)]
        address: String,
    },
}

fn main() {}
