//! The statements on `statefold_idempotency` and `statefold_outbox`,
//! rendered once per runner or dispatcher through the backend's quoting and
//! placeholders. Times that decide (expiry, the next attempt) are the
//! database's ([`Backend::NOW_MILLIS`]), never a process's.

use crate::backend::render::{list, Params, IDEMPOTENCY, OUTBOX};
use crate::backend::Backend;

/// The outbox's states: waiting to be sent, or given up on (a dead letter).
/// Sent rows are deleted.
pub(crate) const PENDING: i64 = 0;
pub(crate) const DEAD: i64 = 1;

/// The columns of an outbox row as the dispatcher reads it.
pub(crate) const OUTBOX_READ: [&str; 8] =
    ["id", "message_id", "kind", "key", "body", "attempts", "available_at", "created_at"];

pub(crate) struct Sql {
    /// Binds: key, created_at, ttl (ms).
    pub(crate) insert_key: String,
    /// Binds: outcome, key.
    pub(crate) finish_key: String,
    /// Binds: key.
    pub(crate) read_key: String,
    /// The same, reading the latest committed row inside a transaction. Binds: key.
    pub(crate) read_key_locked: String,
    /// No binds.
    pub(crate) expire_keys: String,
    /// Binds: message_id, kind, key, body, idempotency_key, created_at.
    pub(crate) insert_outgoing: String,
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
            let (k, at, ttl) = (p.next(), p.next(), p.next());
            format!(
                "INSERT INTO {keys} ({}) VALUES ({k}, NULL, {at}, {now} + {ttl})",
                list::<B>(["key", "outcome", "created_at", "expires_at"])
            )
        };
        let finish_key = {
            let mut p = Params::<B>::new();
            let (outcome, k) = (p.next(), p.next());
            format!("UPDATE {keys} SET {} = {outcome} WHERE {key} = {k}", q("outcome"))
        };
        let read_key = format!("SELECT {} FROM {keys} WHERE {key} = {}", q("outcome"), B::placeholder(1));
        let insert_outgoing = {
            let mut p = Params::<B>::new();
            let values: Vec<String> = (0..6).map(|_| p.next()).collect();
            format!(
                "INSERT INTO {outbox} ({}) VALUES ({}, {}, {}, {}, {}, 0, 0, {PENDING}, {})",
                list::<B>([
                    "message_id",
                    "kind",
                    "key",
                    "body",
                    "idempotency_key",
                    "attempts",
                    "available_at",
                    "state",
                    "created_at"
                ]),
                values[0],
                values[1],
                values[2],
                values[3],
                values[4],
                values[5],
            )
        };
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
            finish_key,
            expire_keys: format!("DELETE FROM {keys} WHERE {} < {now}", q("expires_at")),
            insert_outgoing,
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

    /// Deletes the rows of `n` ids (sent). Binds: the ids.
    pub(crate) fn delete<B: Backend>(&self, n: usize) -> String {
        let mut p = Params::<B>::new();
        let ids: Vec<String> = (0..n).map(|_| p.next()).collect();
        format!("DELETE FROM {} WHERE {} IN ({})", self.quoted_outbox, B::quote_ident("id"), ids.join(", "))
    }
}
