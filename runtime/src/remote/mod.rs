//! Beyond one database: a machine's log and outbox relayed to a
//! distributed log, and consumers fed from it.

#[cfg(feature = "nats")]
pub mod nats;
