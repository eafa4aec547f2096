use statefold::Machine;

/// 46 bytes: `<events>_record_version_key` would be 65.
#[derive(Machine)]
#[machine(events_table = "customer_order_events_from_the_partner_storefr")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
