use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[serde(rename(serialize = "buyer", deserialize = "customer"))]
        customer: String,
    },
}

fn main() {}
