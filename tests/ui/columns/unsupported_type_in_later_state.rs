use statefold::Machine;

use std::collections::HashMap;

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
    #[from(Placed)]
    Packed { weights: HashMap<String, i64> },
}

fn main() {}
