use statefold::Machine;

#[derive(Machine)]
enum Bestellung {
    #[initial]
    Aufgegeben,
    #[from(Aufgegeben)]
    Bezahlt { gebühr: i64 },
}

fn main() {}
