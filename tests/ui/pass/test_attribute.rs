//! What `#[statefold::test]` accepts: stores with or without the backend
//! named, the test's database, a `Result`, options, and passed-on attributes.

use statefold::testing::TestDatabase;
use statefold::{Machine, Store};

#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    Placed { customer: String },
}

#[derive(Machine, Clone, Debug, PartialEq)]
enum Lamp {
    #[initial]
    Off,
}

/// Stores of two machines and the database, the backend left implicit.
#[statefold::test]
async fn implicit_backend(orders: Store<Order>, lamps: Store<Lamp>, db: TestDatabase) {
    orders.insert(OrderPlaced { customer: "ada".into() }).await.unwrap();
    lamps.insert(LampOff).await.unwrap();
    assert!(db.name().starts_with("sf_"));
}

/// The backend named by the test's type parameter, and a `Result`.
#[statefold::test(backends(sqlite))]
async fn named_backend<B: statefold::Backend>(orders: Store<Order, B>, db: TestDatabase<B>) -> Result<(), statefold::Error> {
    orders.insert(OrderPlaced { customer: db.url().to_owned() }).await?;
    Ok(())
}

#[statefold::test(crate = "statefold", backends(sqlite))]
#[should_panic(expected = "no order")]
#[ignore]
async fn passed_on_attributes(orders: Store<Order>) {
    assert!(orders.find(&1).await.unwrap().is_some(), "no order");
}

/// No parameters at all: a database nobody uses.
#[statefold::test]
async fn no_parameters() {}

fn main() {}
