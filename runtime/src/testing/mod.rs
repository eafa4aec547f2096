//! Testing machines and the code around them, one way for all:
//!
//! - [`given`] / when / then: given a record's history, when a typed or
//!   dynamic transition, then these events and this state, or this typed
//!   error; without a database, or against a store;
//! - [`assert_effects`]: given a record, when a pure handler runs, then
//!   these effects;
//! - [`#[statefold::test]`](crate::test): an `async fn` taking stores runs
//!   once per backend, each time in a fresh database ([`TestDatabase`])
//!   that is dropped afterwards, passed or failed.
//!
//! Every mismatch panics with a line [`diff`] of the pretty `Debug` of both
//! sides (`-` expected, `+` actual).
//!
//! # Backends and their servers
//!
//! `#[statefold::test]` runs on each backend this crate enables (its
//! `sqlite`, `postgres` and `mysql` features), or on those listed in
//! `backends(..)`. SQLite needs nothing: each test gets a file in the
//! temporary directory. PostgreSQL and MySQL tests create a database named
//! `sf_<test>_<pid>_<nanos>` on the server in `STATEFOLD_TEST_POSTGRES_URL`
//! or `STATEFOLD_TEST_MYSQL_URL` (whose user may create databases) and drop
//! it afterwards. A test killed before it ends leaves its database behind:
//! `sf_*` databases are safe to drop.
//!
//! When a server's variable is unset **when the tests are built**, that
//! backend's tests are compiled as ignored, with the variable as the reason,
//! so `cargo test` counts them as ignored, not passed (cargo rebuilds the
//! tests when the variable changes). With `STATEFOLD_TEST_REQUIRE_ALL=1`,
//! or `CI` set (and `STATEFOLD_TEST_REQUIRE_ALL` not `0`), nothing is
//! ignored and a missing URL fails the test: CI then tests every backend.

mod database;
mod diff;
mod effects;
mod given;

pub use database::{TestBackend, TestDatabase, REQUIRE_ALL};
pub use diff::diff;
pub use effects::assert_effects;
pub use given::{given, Given, Then, When};

/// What `#[statefold::test]` expands to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use super::database::{database_url, run, unique_name, Schema};
}
