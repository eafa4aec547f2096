use statefold::Machine;

/// Same state names as `Invoice`, no clash: generated names carry the machine's.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { amount_cents: i64 },
    #[from(Placed)]
    Paid,
}

/// Same state names as `Order`.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Invoice {
    #[initial]
    Placed { number: String },
    #[from(Placed)]
    Paid,
}

fn main() {
    assert_eq!(Order::DEF.table, "order");
    assert_eq!(Invoice::DEF.events_table, "invoice_events");
    let _ = (OrderPaid, InvoicePaid, OrderStatus::Paid, InvoiceStatus::Paid);
}
