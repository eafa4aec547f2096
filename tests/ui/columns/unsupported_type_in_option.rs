use statefold::Machine;

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { lines: Option<Vec<String>> },
}

fn main() {}
