use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        customer: String,
        #[serde(rename = "customer")]
        buyer: String,
    },
}

fn main() {}
