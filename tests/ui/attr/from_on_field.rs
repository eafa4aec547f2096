use statefold::Machine;

#[derive(Machine)]
enum Order {
    #[initial]
    Placed {
        #[from(Placed)]
        customer: String,
    },
}

fn main() {}
