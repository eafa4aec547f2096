use statefold::Machine;

#[derive(Machine)]
enum Order<T> {
    #[initial]
    Placed { item: T },
}

fn main() {}
