use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    #[serde(deny_unknown_fields)]
    Placed { customer: String },
}

fn main() {}
