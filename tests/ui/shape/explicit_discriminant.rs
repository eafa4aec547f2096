use statefold::Machine;

#[derive(Machine)]
enum Light {
    #[initial]
    Off = 0,
    #[from(Off)]
    On = 1,
}

fn main() {}
