use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[column(json, json)]
        lines: Vec<String>,
    },
}

fn main() {}
