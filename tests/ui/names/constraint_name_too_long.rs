use statefold::Machine;

/// 52 bytes: `<table>_status_check` would be 65.
#[derive(Machine)]
#[machine(table = "customer_orders_placed_through_the_partner_storefront")]
enum Order {
    #[initial]
    Placed,
}

fn main() {}
