use statefold::Machine;

#[derive(Machine)]
#[machine(id = String, id = uuid::Uuid)]
enum Upload {
    #[initial]
    Started,
}

fn main() {}
