use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[serde(rename_all = "camel_case")]
    Placed { customer_name: String },
}

fn main() {}
