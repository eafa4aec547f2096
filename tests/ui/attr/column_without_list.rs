use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[column]
        customer: String,
    },
}

fn main() {}
