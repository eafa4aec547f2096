use statefold::Machine;

#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(id = std::path::PathBuf)]
enum Upload {
    #[initial]
    Started,
}

fn main() {}
