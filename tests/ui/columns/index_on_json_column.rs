use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[column(json, index)]
        lines: Vec<String>,
    },
}

fn main() {}
