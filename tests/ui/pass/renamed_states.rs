use statefold::{Machine, Status};

/// States whose database names are fixed by hand.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    #[state(name = "new")]
    Placed,
    #[from(Placed)]
    #[state(name = "settled", was = "paid", was = "paid_v1")]
    Settled,
}

fn main() {
    assert_eq!(OrderStatus::Placed.as_str(), "new");
    // Text for people names the variant; the stored name is `as_str`.
    assert_eq!(OrderStatus::Settled.to_string(), "Settled");
    assert_eq!(OrderStatus::Settled.as_str(), "settled");
    assert_eq!("Settled".parse::<OrderStatus>(), Ok(OrderStatus::Settled));
    assert_eq!("settled".parse::<OrderStatus>(), Ok(OrderStatus::Settled));
    // Rows written under an earlier name still load.
    assert_eq!(OrderStatus::from_db_name("paid_v1"), Some(OrderStatus::Settled));
    let err = "shipped".parse::<OrderStatus>().unwrap_err();
    assert_eq!(err.to_string(), "`shipped` is not a status of `Order`");
}
