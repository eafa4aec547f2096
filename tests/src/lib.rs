//! Machines and harness shared by statefold's tests.
//!
//! - [`machines`]: the machines the behaviour suite persists;
//! - [`db`]: a fresh database per test, on each backend;
//! - [`streams`]: the suite of streams and consumers, instantiated by
//!   [`stream_suite!`] in `tests/stream_{sqlite,postgres,mysql}.rs`;
//! - [`operations`]: what an operator relies on (leases, wake-ups, stalls,
//!   positions, catch-up), instantiated by [`operations_suite!`] in
//!   `tests/operations_{sqlite,postgres,mysql}.rs`;
//! - [`effects`]: side effects as data, idempotency keys and the outbox,
//!   instantiated by [`effects_suite!`] in `tests/effects_{sqlite,postgres,mysql}.rs`;
//! - [`nats`]: the JetStream relay, source and destination, instantiated by
//!   [`nats_suite!`] in `tests/nats_{sqlite,postgres,mysql}.rs`;
//! - [`grpc`]: event streams between services over gRPC, instantiated by
//!   [`grpc_suite!`] in `tests/grpc_{sqlite,postgres,mysql}.rs`;
//! - [`observe`]: logs and metrics captured for those tests;
//! - [`wire`]: a proxy counting the statements a PostgreSQL server receives;
//! - [`mod@suite`]: the behaviour suite, written once and instantiated per backend
//!   by [`suite!`] in `tests/store_{sqlite,postgres,mysql}.rs`.

pub mod db;
pub mod effects;
pub mod grpc;
pub mod machines;
pub mod nats;
pub mod observe;
pub mod operations;
pub mod streams;
pub mod suite;
pub mod wire;
