use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[column(jsonb)]
        lines: Vec<String>,
    },
}

fn main() {}
