//! What a consumer runs: a handler per event, and for rebuilds, a reset.

use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::machine::Machine;
use crate::store::Tx;
use std::future::Future;

/// What a handler returns when it fails: any error.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Handles a consumer's events, one at a time, in order.
///
/// Each event comes with a transaction of the store's database. The
/// consumer saves its cursor in that same transaction and commits it after
/// `handle` returns `Ok`: what the handler writes through `tx` (an SQL
/// projection) happens exactly once per event, however often the process
/// dies or retries. Effects outside the database (an e-mail, an HTTP call)
/// happen at least once: make them idempotent.
///
/// Returning `Err` rolls the transaction back; the consumer retries the
/// same event with backoff and never skips it, unless it has a dead-letter
/// policy ([`Consumer::dead_letter_after`](super::Consumer::dead_letter_after)).
///
/// ```
/// use statefold::{Envelope, Handler, HandlerError, Machine, Sqlite, Tx};
///
/// #[derive(Debug, Clone, Machine)]
/// #[machine(table = "doors")]
/// enum Door {
///     #[initial]
///     #[from(Open)]
///     Closed { who: String },
///     #[from(Closed)]
///     Open { who: String },
/// }
///
/// /// Counts openings per person, in a table of its own.
/// struct Openings;
///
/// impl Handler<Door, Sqlite> for Openings {
///     async fn handle(&mut self, tx: &mut Tx<'static, Sqlite>, event: &Envelope<Door>) -> Result<(), HandlerError> {
///         if let Door::Open { who } = &event.event {
///             sqlx::query("INSERT INTO openings (who, n) VALUES (?, 1) ON CONFLICT (who) DO UPDATE SET n = n + 1")
///                 .bind(who)
///                 .execute(&mut **tx)
///                 .await?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Handler<M: Machine, B: Backend>: Send {
    /// Handles one event inside `tx`, the transaction that also saves the
    /// consumer's cursor past it. Do not commit `tx`.
    fn handle(
        &mut self,
        tx: &mut Tx<'static, B>,
        event: &Envelope<M>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A handler whose work can be rebuilt from the log: it can clear what it
/// built ([`reset`](Self::reset)), so that a
/// [rebuild](super::Consumer::rebuild) replays every event onto nothing.
/// Only projections can be rebuilt: replaying onto what a handler already
/// built would apply every event twice.
///
/// ```
/// # use statefold::{Envelope, Handler, HandlerError, Machine, Sqlite, Tx};
/// # #[derive(Debug, Clone, Machine)]
/// # #[machine(table = "doors")]
/// # enum Door { #[initial] #[from(Open)] Closed { who: String }, #[from(Closed)] Open { who: String } }
/// use statefold::Projection;
///
/// /// Who opened the doors, in a table of its own.
/// struct Openers;
///
/// impl Handler<Door, Sqlite> for Openers {
///     async fn handle(&mut self, tx: &mut Tx<'static, Sqlite>, event: &Envelope<Door>) -> Result<(), HandlerError> {
///         if let Door::Open { who } = &event.event {
///             sqlx::query("INSERT INTO openers (who) VALUES (?)").bind(who).execute(&mut **tx).await?;
///         }
///         Ok(())
///     }
/// }
///
/// impl Projection<Door, Sqlite> for Openers {
///     async fn reset(&mut self, tx: &mut Tx<'static, Sqlite>) -> Result<(), HandlerError> {
///         sqlx::query("DELETE FROM openers").execute(&mut **tx).await?;
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be rebuilt: it does not say how to clear what it built",
    label = "a rebuild replays every event; this handler has no `reset`",
    note = "implement `statefold::Projection` for `{Self}`, whose `reset` clears the projection in the rebuild's transaction"
)]
pub trait Projection<M: Machine, B: Backend>: Handler<M, B> {
    /// Clears what the handler built, in the transaction that also puts
    /// the cursor back at the start, before a rebuild replays every event.
    fn reset(&mut self, tx: &mut Tx<'static, B>) -> impl Future<Output = Result<(), HandlerError>> + Send;
}
