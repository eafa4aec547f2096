#![doc = include_str!("../../README.md")]

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod backend;
#[cfg(all(feature = "cli", any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
pub mod cli;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod effects;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod envelope;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod error;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod fate;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod fold;
mod machine;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod migrate;
#[cfg(all(any(feature = "nats", feature = "grpc"), any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
pub mod remote;
pub mod schema;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod store;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod stream;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod testing;
mod value;

#[cfg(feature = "mysql")]
pub use backend::MySql;
#[cfg(feature = "postgres")]
pub use backend::Postgres;
#[cfg(feature = "sqlite")]
pub use backend::Sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use backend::{Backend, Blocker};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use effects::Effects;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use envelope::Envelope;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use error::Error;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use fate::{Fate, FaultPoint};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use fold::{AuditReport, Mismatch, Problem};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use store::{NewRecord, Page, Repair, RepairOptions, RepairReport, Store, Tx};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use stream::{
    Backoff, Consumer, EventStream, Feed, Handler, HandlerError, InvalidPosition, Position, Projection, Source, Start,
    StreamOptions,
};

#[doc(hidden)]
pub use machine::__upcast;
pub use machine::{
    ColumnError, Encoded, Enters, Event, GeneratedId, Initial, Key, Machine, Metadata, Record, Row, RowHeader, Status,
    Transition, UnknownStatus,
};
pub use schema::{ColumnDef, Edge, FieldDef, IdDef, LogicalType, MachineDef, StateDef};
pub use value::{json_from_value, json_to_value, Column, Value, ValueError};

/// The sqlx this crate is built on. [`Store::pool`], [`Tx`] and
/// [`Error::Database`] are sqlx types: use this one (`statefold::sqlx`) rather
/// than a `sqlx` dependency of your own, so that the versions always match.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use sqlx;

/// Derives [`Machine`] for an annotated enum. See the crate docs.
pub use statefold_macros::Machine;

/// Runs an `async fn` taking stores as one test per backend, each in a
/// fresh database dropped afterwards. See [`testing`] and the crate docs
/// ("Testing your machines").
///
/// ```
/// use statefold::{Machine, Store};
///
/// #[derive(Machine, Clone, Debug, PartialEq)]
/// enum Lamp {
///     #[initial]
///     #[from(On)]
///     Off,
///     #[from(Off)]
///     On,
/// }
///
/// // `lamp_turns_on::sqlite`, and `::postgres` and `::mysql` with those features.
/// #[statefold::test]
/// async fn lamp_turns_on(lamps: Store<Lamp>) {
///     let off = lamps.insert(LampOff).await.unwrap();
///     assert_eq!(lamps.apply(off.transition(LampOn)).await.unwrap().version(), 2);
/// }
/// ```
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use statefold_macros::test;

/// Expands its input when this crate has the `sqlite` feature: tests of
/// `#[statefold::test]`. Not public API.
#[doc(hidden)]
#[macro_export]
#[cfg(feature = "sqlite")]
macro_rules! __on_sqlite {
    ($listed:ident $($test:tt)*) => { $($test)* };
}
#[doc(hidden)]
#[macro_export]
#[cfg(not(feature = "sqlite"))]
macro_rules! __on_sqlite {
    (listed $($test:tt)*) => {
        ::core::compile_error!("`backends(sqlite)` needs statefold's `sqlite` feature");
    };
    (implied $($test:tt)*) => {};
}

/// As `__on_sqlite`, for the `postgres` feature. Not public API.
#[doc(hidden)]
#[macro_export]
#[cfg(feature = "postgres")]
macro_rules! __on_postgres {
    ($listed:ident $($test:tt)*) => { $($test)* };
}
#[doc(hidden)]
#[macro_export]
#[cfg(not(feature = "postgres"))]
macro_rules! __on_postgres {
    (listed $($test:tt)*) => {
        ::core::compile_error!("`backends(postgres)` needs statefold's `postgres` feature");
    };
    (implied $($test:tt)*) => {};
}

/// As `__on_sqlite`, for the `mysql` feature. Not public API.
#[doc(hidden)]
#[macro_export]
#[cfg(feature = "mysql")]
macro_rules! __on_mysql {
    ($listed:ident $($test:tt)*) => { $($test)* };
}
#[doc(hidden)]
#[macro_export]
#[cfg(not(feature = "mysql"))]
macro_rules! __on_mysql {
    (listed $($test:tt)*) => {
        ::core::compile_error!("`backends(mysql)` needs statefold's `mysql` feature");
    };
    (implied $($test:tt)*) => {};
}

/// `$target` cannot be entered from `$source`: `Enters` holds only if
/// `(): $gate<'_>`, which nothing implements, so a transition along this
/// pair fails with the gate's message (written in states by the derive).
/// Expanded here rather than in the derive so that rustc does not take the
/// impl for a derived one and suggest implementing it by hand. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __not_an_edge {
    ($source:ty => $target:ty, $($gate:tt)+) => {
        impl<'a> $crate::Enters<$source> for $target where (): $($gate)+<'a> {}
    };
}

/// Paths used by generated code. Not public API.
#[doc(hidden)]
pub mod __private {
    // The crate itself: generated code imports it once under a local name,
    // so a wrong `#[machine(crate = "..")]` is one unresolved import, not an
    // error at every generated path.
    pub use crate as runtime;
    pub use chrono;
    pub use serde;
    pub use serde_json;
    pub use uuid;
}
