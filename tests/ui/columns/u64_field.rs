use statefold::Machine;

#[derive(Machine, Clone, Debug, PartialEq)]
enum Counter {
    #[initial]
    Started { count: u64 },
}

fn main() {}
