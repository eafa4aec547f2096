//! Beyond one database: a machine's log shared with other services over
//! gRPC, relayed to a distributed log with the outbox, and consumers fed
//! from either. Each behind its feature.

#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "nats")]
pub mod nats;
