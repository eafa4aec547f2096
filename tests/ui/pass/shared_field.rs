use statefold::Machine;

/// A refundable payment.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Payment {
    #[initial]
    Authorized { amount_cents: i64 },
    #[from(Authorized)]
    Captured { amount_cents: i64 },
    #[from(Captured)]
    Refunded { amount_cents: i64, reason: String },
}

fn main() {
    let def = Payment::DEF;
    let names: Vec<&str> = def.columns.iter().map(|c| c.name).collect();
    assert_eq!(names, ["amount_cents", "reason"]);
    assert_eq!(def.state("Refunded").unwrap().fields, ["amount_cents", "reason"]);
    let row: fn(&PaymentRow) -> i64 = |row| row.amount_cents;
    let _ = row;
}
