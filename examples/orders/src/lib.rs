//! The orders service's machine, shared as a crate: the `orders` binary
//! persists it, and other services (`examples/shipping`) read its log over
//! gRPC typed by this very declaration.

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
        /// Why it was called off.
        reason: String,
    },
    /// The parcel arrived.
    #[from(Shipped)]
    Delivered,
}
