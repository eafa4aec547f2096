use statefold::Machine;

fn v1_to_v2(payload: &str) -> String {
    payload.to_owned()
}

#[derive(Machine)]
enum Order {
    #[initial]
    #[event(version = 2, upcast(1 => v1_to_v2))]
    Placed { customer: String },
}

fn main() {}
