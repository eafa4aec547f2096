use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[serde(with = "my_codec")]
        customer: String,
    },
}

fn main() {}
