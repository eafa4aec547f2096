use statefold::Machine;

#[derive(Machine)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
