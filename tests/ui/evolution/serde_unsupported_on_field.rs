use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

fn main() {}
