//! An order's life, declared once.
//!
//! Run with `cargo run -p orders`.

use statefold::Machine;

/// An order's life.
#[derive(Debug, Clone, PartialEq, Machine)]
#[machine(table = "orders")]
pub enum Order {
    /// The customer placed the order.
    #[initial]
    Placed {
        /// Who ordered.
        customer: String,
        /// The total, in cents.
        amount_cents: i64,
    },
    /// The payment went through.
    #[from(Placed)]
    Paid {
        /// The payment provider's reference.
        payment_ref: String,
    },
    /// The parcel left the warehouse.
    #[from(Paid)]
    Shipped {
        /// The carrier's tracking number.
        tracking: String,
    },
    /// The order was called off before shipping.
    #[from(Placed, Paid)]
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The parcel arrived.
    #[from(Shipped)]
    Delivered,
}

fn main() {
    let def = Order::DEF;
    println!("{} -> tables `{}` and `{}`", def.name, def.table, def.events_table);
    println!("{}", def.mermaid);
}
