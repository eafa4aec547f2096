use statefold::Machine;

use std::collections::HashMap;

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { lines: HashMap<String, i64> },
}

fn main() {}
