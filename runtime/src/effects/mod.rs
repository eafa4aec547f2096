//! Side effects as data (the side-effect machine): pure handlers return
//! [`Effects`]; a [`Runner`] executes them once per idempotency key in one
//! transaction, writing messages and requests to an outbox; a
//! [`Dispatcher`] delivers them at least once after the commit.
//!
//! - [`value`](Effects): transitions of records of any machines, messages,
//!   requests; composable and comparable;
//! - [`Change`]: a typed transition with its machine erased, and the store
//!   that applies it (looked up by machine in the runner);
//! - [`Message`], [`Request`]: what leaves the service, checked when built;
//! - [`Runner`]: the idempotency key, the transaction, the outbox rows;
//! - [`Dispatcher`]: reads the outbox, decides (a function without I/O),
//!   sends to [`Destination`]s: [`Channel`] in process, [`Http`] (feature `http`).
//!
//! What is atomic with what, what is at least once and where duplicates
//! stop: `docs/adr/0003-effects-and-outbox.md`.

mod change;
mod decide;
mod destination;
mod dispatcher;
#[cfg(feature = "http")]
mod http;
mod outgoing;
mod runner;
mod sql;
mod value;

pub use change::{Applied, Change};
pub use destination::{Channel, Delivery, Destination, SendError};
pub use dispatcher::{DeadLetter, Dispatcher};
#[cfg(feature = "http")]
pub use http::Http;
pub use outgoing::{Message, Method, Outgoing, Request};
pub use runner::{Outcome, Ran, Runner};
pub use value::Effects;
