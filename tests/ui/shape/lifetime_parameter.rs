use statefold::Machine;

#[derive(Machine)]
enum Order<'a> {
    #[initial]
    Placed { customer: &'a str },
}

fn main() {}
