use statefold::Machine;

#[derive(Machine)]
enum Order
where
    u8: Copy,
{
    #[initial]
    Placed,
}

fn main() {}
