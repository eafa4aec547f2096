//! Wake-ups after commits, for this process's streams.

use crate::schema::MachineDef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

/// Wakes this process's streams of one machine's log after a commit,
/// whichever store, clone or transaction committed it: every store of the
/// machine shares one, found by the name of its events table.
#[derive(Clone)]
pub(crate) struct Notifier(Arc<watch::Sender<u64>>);

/// The notifiers of this process, one per events table.
static NOTIFIERS: Mutex<Option<HashMap<&'static str, Notifier>>> = Mutex::new(None);

impl Notifier {
    /// The notifier of `def`'s events table.
    pub(crate) fn of(def: &MachineDef) -> Self {
        Self::named(def.events_table)
    }

    /// The notifier of the log `table` (an events table, or the outbox).
    pub(crate) fn named(table: &'static str) -> Self {
        let mut notifiers = NOTIFIERS.lock().unwrap_or_else(PoisonError::into_inner);
        let notifiers = notifiers.get_or_insert_with(HashMap::new);
        notifiers.entry(table).or_insert_with(|| Self(Arc::new(watch::Sender::new(0)))).clone()
    }

    /// Wakes every stream waiting on this log.
    pub(crate) fn wake(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes after every commit of an event of this log.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// Whether both wake the same streams.
    pub(crate) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
