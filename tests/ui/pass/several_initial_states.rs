use statefold::{LogicalType, Machine};

/// A support ticket, opened by a customer or by monitoring.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "tickets")]
enum Ticket {
    #[initial]
    OpenedByCustomer { subject: String, customer: String },
    #[initial]
    OpenedByAlert { subject: String, alert_id: i64 },
    #[from(OpenedByCustomer, OpenedByAlert)]
    Closed,
}

fn main() {
    let def = Ticket::DEF;
    let initial: Vec<&str> = def.initial_states().map(|s| s.name).collect();
    assert_eq!(initial, ["OpenedByCustomer", "OpenedByAlert"]);
    // Set by every initial state: NOT NULL. Set by only one: nullable.
    assert!(!def.column("subject").unwrap().nullable);
    assert!(def.column("customer").unwrap().nullable);
    assert_eq!(def.column("alert_id").unwrap().ty, LogicalType::I64);
    let _: fn(&TicketRow) -> (&String, &Option<String>, &Option<i64>) = |row| (&row.subject, &row.customer, &row.alert_id);
    fn insertable<E: statefold::Initial>() {}
    insertable::<TicketOpenedByCustomer>();
    insertable::<TicketOpenedByAlert>();
}
