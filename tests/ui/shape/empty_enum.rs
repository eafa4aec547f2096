use statefold::Machine;

#[derive(Machine)]
enum Nothing {}

fn main() {}
