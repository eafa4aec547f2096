use statefold::Machine;

fn v1_to_v2(payload: serde_json::Value) -> Result<serde_json::Value, String> {
    Ok(payload)
}

#[derive(Machine)]
enum Order {
    #[initial]
    #[event(version = 2, upcast(1 => v1_to_v2, 2 => v1_to_v2))]
    Placed { customer: String },
}

fn main() {}
