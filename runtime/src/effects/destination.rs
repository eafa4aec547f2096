//! Where the dispatcher sends: a small trait, and an in-process channel.

use super::outgoing::Outgoing;
use futures::future::BoxFuture;
use std::fmt;
use std::future::Future;
use tokio::sync::mpsc;

/// One message or request as the dispatcher hands it to a destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The message id: the same on every attempt, so that a receiver can
    /// drop duplicates (the HTTP destination sends it as `Idempotency-Key`).
    pub id: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// What to send.
    pub outgoing: Outgoing,
}

/// Why a send failed, and whether trying again may help.
///
/// ```
/// use statefold::effects::SendError;
/// assert!(SendError::retryable("503 Service Unavailable").is_retryable());
/// assert!(!SendError::permanent("404 Not Found").is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    message: String,
    retryable: bool,
}

impl SendError {
    /// A failure that may pass (a timeout, a 5xx, a 429, a refused
    /// connection): the dispatcher tries again after backoff, up to its limit.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true }
    }

    /// A failure that will not pass (a 4xx, a message the destination
    /// cannot take): the dispatcher dead-letters it at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false }
    }

    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Where an outbox dispatcher delivers messages or requests: an HTTP
/// client, a broker (a NATS JetStream destination would publish with the
/// delivery id as `Nats-Msg-Id`), a channel in tests.
///
/// One rule: return `Ok` only once the receiver has the delivery; the
/// dispatcher then forgets it. Anything else is an error, retryable or not.
///
/// ```
/// use statefold::effects::{Delivery, Destination, Outgoing, SendError};
///
/// /// Prints messages; refuses requests.
/// struct Print;
///
/// impl Destination for Print {
///     async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
///         match &delivery.outgoing {
///             Outgoing::Message(m) => Ok(println!("{} {}: {}", delivery.id, m.topic, m.payload)),
///             _ => Err(SendError::permanent("Print only prints messages")),
///         }
///     }
/// }
/// ```
pub trait Destination: Send + Sync + 'static {
    /// Sends one delivery.
    fn send(&self, delivery: &Delivery) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// A destination with its type erased, as the dispatcher holds it.
pub(crate) trait AnyDestination: Send + Sync + 'static {
    fn send_dyn<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>>;
}

impl<D: Destination> AnyDestination for D {
    fn send_dyn<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.send(delivery))
    }
}

/// An in-process destination: every delivery goes to a channel (tests,
/// and services that handle their own messages).
///
/// ```
/// use statefold::effects::Channel;
/// let (channel, mut deliveries) = Channel::new();
/// # drop((channel, deliveries.try_recv()));
/// ```
#[derive(Clone)]
pub struct Channel(mpsc::UnboundedSender<Delivery>);

impl Channel {
    /// The destination, and the receiving end of its deliveries.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Delivery>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self(sender), receiver)
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("closed", &self.0.is_closed()).finish()
    }
}

impl Destination for Channel {
    /// Retryable while the receiver is dropped.
    async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        self.0.send(delivery.clone()).map_err(|_| SendError::retryable("the channel's receiver is closed"))
    }
}
