//! A machine's event log served to other services over gRPC, and the
//! client that reads it as the same stream (feature `grpc`).
//!
//! Services share events, not databases: the service that owns a machine
//! runs a [`Server`] over its store; another service reads the log with a
//! [`Client`], typed by the same `#[derive(Machine)]` declaration (a crate
//! both depend on), as an [`EventStream`](crate::EventStream) of the same
//! [`Envelope`](crate::Envelope)s a local store gives, or through a
//! [`Consumer`](crate::Consumer) that handles it exactly once into its own
//! database ([`Consumer::with_source`](crate::Consumer::with_source) with
//! [`Client::source`]).
//!
//! The protocol is `statefold.stream.v1` (`runtime/proto/statefold/stream/v1/stream.proto`
//! in the repository): a server-streaming `Subscribe` from a position, the
//! start or the head, sending batches of events (payload and metadata as
//! JSON, with kind, position, record id, version and time) and heartbeats;
//! and `Describe`, where the log ends. Any gRPC client can read it.
//!
//! ```no_run
//! use statefold::remote::grpc::{Client, Grant, Server, Tokens};
//! use statefold::{Consumer, Envelope, Handler, HandlerError, Machine, Sqlite, Store, Tx};
//!
//! #[derive(Debug, Clone, Machine)]
//! #[machine(table = "orders")]
//! enum Order {
//!     #[initial]
//!     Placed { customer: String },
//! }
//!
//! struct Count(u64);
//! impl Handler<Order, Sqlite> for Count {
//!     async fn handle(&mut self, _: &mut Tx<'static, Sqlite>, _: &Envelope<Order>) -> Result<(), HandlerError> {
//!         self.0 += 1;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The orders service serves its log.
//! let orders = Store::<Order, Sqlite>::connect("sqlite:orders.db").await?;
//! let tokens = Tokens::new().token("t0ken", Grant::new("shipping").machine("orders"));
//! let server = Server::new(tokens).register(&orders);
//! tokio::spawn(server.serve_at("127.0.0.1:50051".parse()?, std::future::pending()));
//!
//! // The shipping service handles it into its own database, exactly once.
//! let local = Store::<Order, Sqlite>::connect("sqlite:shipping.db").await?;
//! local.create_support_tables().await?;
//! let client = Client::builder("http://127.0.0.1:50051").token("t0ken").build()?;
//! let consumer = Consumer::with_source(&local, "shipping", client.source::<Order>());
//! consumer.catch_up(&mut Count(0)).await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod client;
// Written by tonic-prost-build, checked by `tests/tests/grpc_codegen.rs`: not formatted here.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic, rust_2018_idioms)]
#[rustfmt::skip]
mod generated;
mod server;
mod wire;

pub use auth::{Grant, Tokens, Verifier};
pub use client::{Client, ClientBuilder, GrpcSource};
pub use server::{Monitor, Server, StreamStats};

/// The tonic this module is built on: its TLS types
/// (`tonic::transport::{ServerTlsConfig, ClientTlsConfig, Identity, Certificate}`)
/// configure [`Server::tls`] and [`ClientBuilder::tls`].
pub use tonic;

/// A server that could not start or failed while serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The address could not be bound.
    #[error("cannot listen: {0}")]
    Bind(#[source] std::io::Error),
    /// The TLS configuration was refused, or the server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}
