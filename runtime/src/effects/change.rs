//! A typed transition with its machine erased, so that one `Effects` can
//! hold transitions of several machines, and the store that applies it.
//!
//! The edge is checked where the transition is built
//! ([`Record::transition`](crate::Record::transition) only compiles along a
//! declared edge); erasing keeps the record's key, the status and version
//! it was read at, and the event as the machine's enum. To apply it, the
//! runner looks up the store of its machine by `TypeId` (a
//! [`Runner::with_store`](super::Runner::with_store) registry) and the
//! store downcasts it back: the one place where the machine's type returns.

use crate::backend::{Backend, Conn, Write};
use crate::error::Error;
use crate::machine::{Event, Machine, Metadata, Status, Transition};
use crate::schema::MachineDef;
use crate::store::{Notifier, Store, Tx};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::any::{Any, TypeId};
use std::fmt;

/// A transition of a record of any machine, inside [`Effects`](super::Effects).
///
/// Made from a typed [`Transition`] (`record.transition(event).into()`,
/// or [`Effects::transition`](super::Effects::transition)): an illegal edge
/// does not compile. Compares by machine, record, source, version, event
/// and metadata.
pub struct Change(Box<dyn AnyTransition>);

/// The machine-erased operations of a transition.
trait AnyTransition: Send + Sync + 'static {
    fn machine(&self) -> TypeId;
    fn machine_name(&self) -> &'static str;
    fn as_any(&self) -> &dyn Any;
    fn clone_box(&self) -> Box<dyn AnyTransition>;
    fn eq_dyn(&self, other: &dyn AnyTransition) -> bool;
    fn fmt_dyn(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// A transition with its event as the machine's enum.
struct Typed<M: Machine> {
    id: M::Id,
    from: M::Status,
    version: i64,
    event: M,
    metadata: Metadata,
}

impl<M: Machine + Clone + fmt::Debug + PartialEq> AnyTransition for Typed<M> {
    fn machine(&self) -> TypeId {
        TypeId::of::<M>()
    }

    fn machine_name(&self) -> &'static str {
        M::DEF.name
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn clone_box(&self) -> Box<dyn AnyTransition> {
        Box::new(Self {
            id: self.id.clone(),
            from: self.from,
            version: self.version,
            event: self.event.clone(),
            metadata: self.metadata.clone(),
        })
    }

    fn eq_dyn(&self, other: &dyn AnyTransition) -> bool {
        other.as_any().downcast_ref::<Self>().is_some_and(|other| {
            self.id == other.id
                && self.from == other.from
                && self.version == other.version
                && self.event == other.event
                && self.metadata == other.metadata
        })
    }

    fn fmt_dyn(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Transition");
        s.field("machine", &M::DEF.name)
            .field("id", &self.id)
            .field("from", &self.from)
            .field("version", &self.version)
            .field("event", &self.event);
        if self.metadata != Metadata::default() {
            s.field("metadata", &self.metadata);
        }
        s.finish()
    }
}

impl Change {
    /// The name of the machine whose record it moves.
    pub fn machine(&self) -> &'static str {
        self.0.machine_name()
    }

    pub(crate) fn machine_type(&self) -> TypeId {
        self.0.machine()
    }
}

impl<M, E> From<Transition<M, E>> for Change
where
    M: Machine + Clone + fmt::Debug + PartialEq,
    E: Event<Machine = M>,
{
    fn from(transition: Transition<M, E>) -> Self {
        Self(Box::new(Typed::<M> {
            id: transition.id,
            from: transition.from,
            version: transition.version,
            event: transition.event.into(),
            metadata: transition.metadata,
        }))
    }
}

impl Clone for Change {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

impl PartialEq for Change {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_dyn(&*other.0)
    }
}

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_dyn(f)
    }
}

/// What a transition did: the record, the state it entered, its version after.
///
/// ```
/// use statefold::effects::Applied;
/// let applied = Applied { machine: "Card".into(), id: "7".into(), to: "Blocked".into(), version: 2 };
/// assert_eq!(applied.to_string(), "Card 7 -> Blocked (version 2)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The machine's name.
    pub machine: String,
    /// The record's key, as text.
    pub id: String,
    /// The state entered (variant name).
    pub to: String,
    /// The record's version after the transition.
    pub version: i64,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {} (version {})", self.machine, self.id, self.to, self.version)
    }
}

/// A transition as a run writes it: the write, and what it does once applied.
pub(crate) struct Planned {
    /// The guarded row update and event insert.
    pub(crate) write: Write,
    /// What the run's outcome records of it.
    pub(crate) applied: Applied,
}

/// A store with its machine erased: writes the [`Change`]s of its machine.
pub(crate) trait AnyStore<B: Backend>: Send + Sync + 'static {
    /// The machine.
    fn def(&self) -> &'static MachineDef;

    /// Wakes this process's streams of the machine.
    fn notifier(&self) -> &Notifier;

    /// The write of `change` (of this store's machine), recording `key` as
    /// the event's idempotency key unless it has one.
    fn plan(&self, change: &Change, key: &str) -> Result<Planned, Error>;

    /// Runs `write`, planned for `change`, in `tx`.
    fn write_in<'a, 'c: 'a>(
        &'a self,
        tx: &'a mut Tx<'c, B>,
        change: &'a Change,
        write: &'a Write,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Why `change`'s guard matched no row, read on `conn`.
    fn refusal<'a>(&'a self, conn: &'a mut Conn<B>, change: &'a Change) -> BoxFuture<'a, Error>;
}

impl<M: Machine> Typed<M> {
    fn of(change: &Change) -> Result<&Self, Error> {
        change.0.as_any().downcast_ref::<Self>().ok_or(Error::UnregisteredMachine { machine: change.machine() })
    }
}

impl<M, B> AnyStore<B> for Store<M, B>
where
    M: Machine + Clone + fmt::Debug + PartialEq,
    B: Backend,
{
    fn def(&self) -> &'static MachineDef {
        M::DEF
    }

    fn notifier(&self) -> &Notifier {
        Store::notifier(self)
    }

    fn plan(&self, change: &Change, key: &str) -> Result<Planned, Error> {
        let t = Typed::<M>::of(change)?;
        let mut metadata = t.metadata.clone();
        metadata.idempotency_key.get_or_insert_with(|| key.to_owned());
        let write = self.transition_at_write(&t.id, t.from, t.version, &t.event, &metadata)?;
        // A guarded transition, if it applies, leaves the record in the event's state, one version on.
        let applied = Applied {
            machine: M::DEF.name.to_owned(),
            id: t.id.to_string(),
            to: t.event.status().name().to_owned(),
            version: t.version + 1,
        };
        Ok(Planned { write, applied })
    }

    fn write_in<'a, 'c: 'a>(
        &'a self,
        tx: &'a mut Tx<'c, B>,
        change: &'a Change,
        write: &'a Write,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let t = Typed::<M>::of(change)?;
            self.write_at_in(tx, write, &t.id, t.from, t.version).await
        })
    }

    fn refusal<'a>(&'a self, conn: &'a mut Conn<B>, change: &'a Change) -> BoxFuture<'a, Error> {
        Box::pin(async move {
            match Typed::<M>::of(change) {
                Ok(t) => self.refusal_on(conn, &t.id, t.from, t.version).await,
                Err(error) => error,
            }
        })
    }
}
