use statefold::Machine;

#[derive(Machine)]
enum Order<const N: usize> {
    #[initial]
    Placed { lines: i32 },
}

fn main() {}
