use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        customer: String,
        #[serde(skip)]
        note: Option<String>,
    },
}

fn main() {}
