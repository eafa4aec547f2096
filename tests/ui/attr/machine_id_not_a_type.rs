use statefold::Machine;

#[derive(Machine)]
#[machine(id = "uuid")]
enum Upload {
    #[initial]
    Started,
}

fn main() {}
