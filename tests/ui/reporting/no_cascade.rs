use statefold::Machine;

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
    #[from(Payed)]
    Paid { payment_ref: String },
    #[from(Paid)]
    Shipped { tracking: String },
}

// Every generated item still exists, so this code raises no further error.
fn ship(order: statefold::Record<Order, OrderPaid>) -> statefold::Transition<Order, OrderShipped> {
    let status: OrderStatus = order.status();
    let _row: &OrderRow = order.row();
    let _ = (status, <Order as statefold::Machine>::DEF.mermaid);
    order.transition(OrderShipped { tracking: "1Z".into() })
}

fn main() {
    let _ = ship;
}
