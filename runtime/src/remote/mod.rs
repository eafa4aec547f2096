//! A machine's event log shared with other services, behind features.

#[cfg(feature = "grpc")]
pub mod grpc;
