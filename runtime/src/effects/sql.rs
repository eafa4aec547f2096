//! The statements on `statefold_idempotency` and `statefold_outbox`,
//! rendered once per runner or dispatcher through the backend's quoting and
//! placeholders. Times that decide (expiry, the next attempt) are the
//! database's ([`Backend::NOW_MILLIS`]), never a process's.

// The outbox's states: waiting to be sent, or given up on (a dead letter).
// Sent rows are deleted.
use crate::backend::render::{
    list, Params, IDEMPOTENCY, OUTBOX, OUTBOX_DEAD as DEAD, OUTBOX_PENDING as PENDING, OUTBOX_WRITE,
};
use crate::backend::Backend;

/// The columns of an outbox row as the dispatcher reads it.
pub(crate) const OUTBOX_READ: [&str; 8] =
    ["id", "message_id", "kind", "key", "body", "attempts", "available_at", "created_at"];

pub(crate) struct Sql {
    /// Binds: key, outcome, created_at, ttl (ms).
    pub(crate) insert_key: String,
    /// Binds: key.
    pub(crate) read_key: String,
    /// The same, reading the latest committed row inside a transaction. Binds: key.
    pub(crate) read_key_locked: String,
    /// No binds.
    pub(crate) expire_keys: String,
    /// The pending rows of two kinds (the same twice for one), then the
    /// database's clock. Binds: kind, kind, limit.
    pub(crate) pending: String,
    /// Binds: attempts, delay (ms), error, id.
    pub(crate) retry: String,
    /// Binds: attempts, error, id.
    pub(crate) dead: String,
    /// No binds.
    pub(crate) dead_letters: String,
    /// Binds: id.
    pub(crate) requeue: String,
    /// No binds.
    pub(crate) count_pending: String,
    quoted_outbox: String,
}

impl Sql {
    pub(crate) fn new<B: Backend>() -> Self {
        let q = B::quote_ident;
        let now = B::NOW_MILLIS;
        let (keys, outbox) = (q(IDEMPOTENCY), q(OUTBOX));
        let (key, id, state) = (q("key"), q("id"), q("state"));
        let insert_key = {
            let mut p = Params::<B>::new();
            let (k, outcome, at, ttl) = (p.next(), p.next(), p.next(), p.next());
            format!(
                "INSERT INTO {keys} ({}) VALUES ({k}, {outcome}, {at}, {now} + {ttl})",
                list::<B>(["key", "outcome", "created_at", "expires_at"])
            )
        };
        let read_key = format!("SELECT {} FROM {keys} WHERE {key} = {}", q("outcome"), B::placeholder(1));
        let pending = {
            let mut p = Params::<B>::new();
            let (k1, k2, limit) = (p.next(), p.next(), p.next());
            format!(
                "SELECT {}, {now} FROM {outbox} WHERE {state} = {PENDING} AND {} IN ({k1}, {k2}) ORDER BY {id} LIMIT {limit}",
                list::<B>(OUTBOX_READ),
                q("kind"),
            )
        };
        let retry = {
            let mut p = Params::<B>::new();
            let (attempts, delay, error, row) = (p.next(), p.next(), p.next(), p.next());
            format!(
                "UPDATE {outbox} SET {} = {attempts}, {} = {now} + {delay}, {} = {error} WHERE {id} = {row}",
                q("attempts"),
                q("available_at"),
                q("error")
            )
        };
        let dead = {
            let mut p = Params::<B>::new();
            let (attempts, error, row) = (p.next(), p.next(), p.next());
            format!(
                "UPDATE {outbox} SET {} = {attempts}, {state} = {DEAD}, {} = {error} WHERE {id} = {row}",
                q("attempts"),
                q("error")
            )
        };
        Self {
            read_key_locked: format!("{read_key}{}", B::SHARE_LOCK),
            read_key,
            insert_key,
            expire_keys: format!("DELETE FROM {keys} WHERE {} < {now}", q("expires_at")),
            pending,
            retry,
            dead,
            dead_letters: format!(
                "SELECT {} FROM {outbox} WHERE {state} = {DEAD} ORDER BY {id}",
                list::<B>(["id", "message_id", "body", "attempts", "error", "created_at"])
            ),
            requeue: format!(
                "UPDATE {outbox} SET {state} = {PENDING}, {} = 0, {} = 0 WHERE {id} = {} AND {state} = {DEAD}",
                q("attempts"),
                q("available_at"),
                B::placeholder(1)
            ),
            count_pending: format!("SELECT COUNT(*) FROM {outbox} WHERE {state} = {PENDING}"),
            quoted_outbox: outbox,
        }
    }

    /// Inserts `n` outbox rows, in order. Binds per row: message_id, kind,
    /// key, body, idempotency_key, created_at.
    pub(crate) fn insert_outgoing<B: Backend>(&self, n: usize) -> String {
        let mut p = Params::<B>::new();
        let rows: Vec<String> = (0..n)
            .map(|_| {
                let v: Vec<String> = (0..6).map(|_| p.next()).collect();
                format!("({}, {}, {}, {}, {}, 0, 0, {PENDING}, {})", v[0], v[1], v[2], v[3], v[4], v[5])
            })
            .collect();
        format!("INSERT INTO {} ({}) VALUES {}", self.quoted_outbox, list::<B>(OUTBOX_WRITE), rows.join(", "))
    }

    /// Deletes the rows of `n` ids (sent). Binds: the ids.
    pub(crate) fn delete<B: Backend>(&self, n: usize) -> String {
        let mut p = Params::<B>::new();
        let ids: Vec<String> = (0..n).map(|_| p.next()).collect();
        format!("DELETE FROM {} WHERE {} IN ({})", self.quoted_outbox, B::quote_ident("id"), ids.join(", "))
    }
}
