#![deny(missing_docs)]
//! Docs written on the enum reach the generated items and the description.

use statefold::Machine;

/// A parcel on its way.
#[derive(Machine, Clone, Debug, PartialEq)]
pub enum Parcel {
    /// Handed to the carrier.
    #[initial]
    Collected {
        /// The carrier's tracking number.
        tracking: String,
    },
    /// Left at the door.
    #[from(Collected)]
    Delivered,
}

fn main() {
    assert_eq!(Parcel::DEF.doc, "A parcel on its way.");
    assert_eq!(Parcel::DEF.state("Collected").unwrap().doc, "Handed to the carrier.");
    assert_eq!(Parcel::DEF.state("Delivered").unwrap().doc, "Left at the door.");
}
