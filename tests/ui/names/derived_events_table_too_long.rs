use statefold::Machine;

/// The events table is derived from the enum's name:
/// `customer_order_from_the_partner_storefront_events`, 49 bytes.
#[derive(Machine)]
enum CustomerOrderFromThePartnerStorefront {
    #[initial]
    Placed,
}

fn main() {}
