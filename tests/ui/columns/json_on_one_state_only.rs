use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[column(json)]
        lines: Vec<String>,
    },
    #[from(Placed)]
    Amended { lines: Vec<String> },
}

fn main() {}
