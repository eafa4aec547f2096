use statefold::Machine;

#[derive(Machine)]
#[machine(table = "Orders")]
enum Order {
    Placed { id: i64 },
    #[from(Payed)]
    Paid { amount: i64 },
    #[from(Paid)]
    Refunded { amount: String },
}

fn main() {}
