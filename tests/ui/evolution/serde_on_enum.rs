use statefold::Machine;

#[derive(Machine)]
#[serde(rename_all = "camelCase")]
enum Order {
    #[initial]
    Placed { customer_name: String },
}

fn main() {}
