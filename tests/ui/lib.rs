//! statefold's compile-time tests, in `ui.rs`: every diagnostic of the
//! derive has a fixture in `<topic>/<mistake>.rs` with its expected output
//! beside it, and what must compile lives in `pass/`.
//!
//! A crate of its own so that trybuild, which builds the fixtures against
//! this crate's dependencies, builds only statefold and what fixtures use.
