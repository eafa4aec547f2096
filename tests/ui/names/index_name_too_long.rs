use statefold::Machine;

#[derive(Machine)]
#[machine(table = "customer_orders")]
enum Order {
    #[initial]
    Placed {
        #[column(index)]
        reference_number_assigned_by_the_partner_storefront: String,
    },
}

fn main() {}
