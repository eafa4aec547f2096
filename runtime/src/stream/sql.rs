//! The SQL of streams and consumers, rendered once per backend and machine.

use crate::backend::render::{self, list, Params, CURSORS, DEAD_LETTERS, EVENT_COLUMNS, LEASES};
use crate::backend::{Backend, GapSafety};
use crate::schema::{LogicalType, MachineDef};

/// A stream reader's queries over one events table.
pub(crate) struct StreamSql {
    /// Types of an events row as read (plus `tx` on PostgreSQL).
    pub(crate) types: Vec<LogicalType>,
    /// The next batch. Binds: `[tx], id, limit`.
    pub(crate) read: String,
    /// PostgreSQL: whether committed events follow a position, behind the
    /// fence or not (a read that found none then looks again soon). Binds: `tx, id`.
    pub(crate) fenced: String,
    /// MySQL: a locking read of the ids in a hole. Binds: first id, end id (excluded).
    pub(crate) probe: String,
    /// The last position a reader can hand out now: `[tx], id`, no row when empty.
    pub(crate) head: String,
    /// The last committed position, fence or holes aside: `[tx], id`, no row when empty.
    pub(crate) end: String,
    /// How many committed events follow a position. Binds: `[tx], id`.
    pub(crate) count_after: String,
}

impl StreamSql {
    pub(crate) fn new<B: Backend>(def: &MachineDef) -> Self {
        let q = B::quote_ident;
        let events = q(def.events_table);
        let (id, tx) = (q("id"), q("tx"));
        let columns = list::<B>(EVENT_COLUMNS);
        let mut types = render::event_types(def);
        match B::GAP_SAFETY {
            GapSafety::XidFence => {
                types.push(LogicalType::I64);
                // Read as is (the backend decodes `xid8` as a number): a
                // cast per row would cost the server a tenth of the read.
                let tx_out = tx.clone();
                let after = |p: &mut Params<B>| {
                    let (t, i) = (p.next(), p.next());
                    format!("({tx}, {id}) > (CAST(CAST({t} AS TEXT) AS xid8), {i})")
                };
                let horizon = "pg_snapshot_xmin(pg_current_snapshot())";
                let mut p = Params::<B>::new();
                let read = format!(
                    "SELECT {columns}, {tx_out} FROM {events} WHERE {} AND {tx} < {horizon} ORDER BY {tx}, {id} LIMIT {}",
                    after(&mut p),
                    p.next()
                );
                // Not only those behind the fence: the transaction holding
                // it may end between the read and this look, and then an
                // event the read could not return is in front of it, with
                // no commit to wake the reader.
                let fenced = format!("SELECT EXISTS (SELECT 1 FROM {events} WHERE {})", after(&mut Params::<B>::new()));
                Self {
                    types,
                    read,
                    fenced,
                    probe: String::new(),
                    head: format!(
                        "SELECT {tx_out}, {id} FROM {events} WHERE {tx} < {horizon} ORDER BY {tx} DESC, {id} DESC LIMIT 1"
                    ),
                    end: format!("SELECT {tx_out}, {id} FROM {events} ORDER BY {tx} DESC, {id} DESC LIMIT 1"),
                    count_after: format!("SELECT COUNT(*) FROM {events} WHERE {}", after(&mut Params::<B>::new())),
                }
            }
            GapSafety::SingleWriter | GapSafety::LockProbe => {
                let (p1, p2) = (B::placeholder(1), B::placeholder(2));
                Self {
                    types,
                    read: format!("SELECT {columns} FROM {events} WHERE {id} > {p1} ORDER BY {id} LIMIT {p2}"),
                    fenced: String::new(),
                    // `LOCK IN SHARE MODE`, not `FOR SHARE`: MariaDB knows only the former.
                    probe: format!(
                        "SELECT {columns} FROM {events} WHERE {id} >= {p1} AND {id} < {p2} ORDER BY {id} LOCK IN SHARE MODE"
                    ),
                    head: format!("SELECT 0, {id} FROM {events} ORDER BY {id} DESC LIMIT 1"),
                    end: format!("SELECT 0, {id} FROM {events} ORDER BY {id} DESC LIMIT 1"),
                    count_after: format!("SELECT COUNT(*) FROM {events} WHERE {id} > {p1}"),
                }
            }
        }
    }
}

/// The statements on the shared consumer tables, rendered once per backend.
pub(crate) struct SupportSql {
    /// Creates a cursor at the start unless it exists. Binds: stream, consumer, at.
    pub(crate) cursor_create: String,
    /// A cursor's position. Binds: stream, consumer.
    pub(crate) cursor_load: String,
    /// Moves a cursor forward, never back. Binds: tx, id, at, stream, consumer, tx, tx, id.
    pub(crate) cursor_advance: String,
    /// Puts a cursor back at the start (rebuilds only). Binds: at, stream, consumer.
    pub(crate) cursor_reset: String,
    /// Takes or renews a lease held by the owner or expired. Binds:
    /// owner, expires, stream, consumer, owner, now.
    pub(crate) lease_take: String,
    /// Creates a lease unless one exists. Binds: stream, consumer, owner, expires.
    pub(crate) lease_create: String,
    /// Gives a lease up. Binds: stream, consumer, owner.
    pub(crate) lease_release: String,
    /// Records a dead letter. Binds: stream, consumer, tx, id, record id,
    /// kind, payload, metadata, error, attempts, at.
    pub(crate) dead_letter: String,
}

impl SupportSql {
    pub(crate) fn new<B: Backend>() -> Self {
        let q = B::quote_ident;
        let key = |p: &mut Params<B>| format!("{} = {} AND {} = {}", q("stream"), p.next(), q("consumer"), p.next());
        let values = |n: usize| {
            let mut p = Params::<B>::new();
            (0..n).map(|_| p.next()).collect::<Vec<_>>()
        };
        let cursor_create = B::insert_if_absent(
            CURSORS,
            &["stream", "consumer", "tx", "position", "updated_at"],
            &[B::placeholder(1), B::placeholder(2), "0".into(), "0".into(), B::placeholder(3)],
            "stream",
        );
        let cursor_load = {
            let mut p = Params::<B>::new();
            format!("SELECT {}, {} FROM {} WHERE {}", q("tx"), q("position"), q(CURSORS), key(&mut p))
        };
        let cursor_advance = {
            let mut p = Params::<B>::new();
            let (tx, id, at) = (p.next(), p.next(), p.next());
            let key = key(&mut p);
            let (t1, t2, i) = (p.next(), p.next(), p.next());
            format!(
                "UPDATE {} SET {} = {tx}, {} = {id}, {} = {at} WHERE {key} AND ({tx_c} < {t1} OR ({tx_c} = {t2} AND {pos} < {i}))",
                q(CURSORS),
                q("tx"),
                q("position"),
                q("updated_at"),
                tx_c = q("tx"),
                pos = q("position"),
            )
        };
        let cursor_reset = {
            let mut p = Params::<B>::new();
            let at = p.next();
            format!(
                "UPDATE {} SET {} = 0, {} = 0, {} = {at} WHERE {}",
                q(CURSORS),
                q("tx"),
                q("position"),
                q("updated_at"),
                key(&mut p)
            )
        };
        let lease_take = {
            let mut p = Params::<B>::new();
            let (owner, expires) = (p.next(), p.next());
            let key = key(&mut p);
            let (me, now) = (p.next(), p.next());
            format!(
                "UPDATE {} SET {o} = {owner}, {e} = {expires} WHERE {key} AND ({o} = {me} OR {e} < {now})",
                q(LEASES),
                o = q("owner"),
                e = q("expires_at"),
            )
        };
        let lease_create =
            B::insert_if_absent(LEASES, &["stream", "consumer", "owner", "expires_at"], &values(4), "stream");
        let lease_release = {
            let mut p = Params::<B>::new();
            let key = key(&mut p);
            format!("DELETE FROM {} WHERE {key} AND {} = {}", q(LEASES), q("owner"), p.next())
        };
        let dead_columns = [
            "stream",
            "consumer",
            "tx",
            "position",
            "record_id",
            "kind",
            "payload",
            "metadata",
            "error",
            "attempts",
            "created_at",
        ];
        let dead_letter = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            q(DEAD_LETTERS),
            list::<B>(dead_columns),
            values(dead_columns.len()).join(", ")
        );
        Self {
            cursor_create,
            cursor_load,
            cursor_advance,
            cursor_reset,
            lease_take,
            lease_create,
            lease_release,
            dead_letter,
        }
    }
}
