use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[column(index)]
        #[column(index)]
        customer: String,
    },
}

fn main() {}
