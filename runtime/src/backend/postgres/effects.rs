//! A run of effects as one statement: a data-modifying CTE claims the key,
//! applies every transition, inserts the outbox rows and notifies, or
//! changes nothing.
//!
//! ```text
//! WITH k  AS (INSERT INTO statefold_idempotency .. ON CONFLICT DO NOTHING RETURNING key),
//!      u0 AS (UPDATE cards SET .. WHERE id = $ AND status IN (..) AND version = $
//!             AND EXISTS (SELECT 1 FROM k) RETURNING id, version),
//!      e0 AS (INSERT INTO card_events .. SELECT .. FROM u0 RETURNING id),
//!      o  AS (INSERT INTO statefold_outbox .. SELECT .. FROM k, (VALUES ..) .. ORDER BY n),
//!      n  AS (SELECT pg_notify(c, '') FROM k, (VALUES ..) AS c (c))
//! SELECT CAST(CASE WHEN (SELECT count(*) FROM e0) = 1 THEN '1'
//!             ELSE 'statefold: ..' || k.key END AS BIGINT), (SELECT count(*) FROM n)
//! FROM k
//! ```
//!
//! The key's insert comes first (every other part reads `k`): a second run
//! of the key waits on it, as with the runner's transaction elsewhere, and
//! then finds it taken and writes nothing (no row: [`EffectsWritten::Taken`]).
//! A statement cannot roll itself back, but it can fail: when a
//! transition's guard matched no row while the key was claimed, the cast
//! of a text that is not a number aborts it, and everything it wrote with
//! it (PostgreSQL folds constants when it plans, so the text includes the
//! key, which it cannot fold).

use super::Postgres;
use crate::backend::render::{self, list, Params, IDEMPOTENCY, OUTBOX, OUTBOX_PENDING, OUTBOX_WRITE};
use crate::backend::{Backend, Bind, EffectsWrite};
use crate::schema::LogicalType;

/// What the text of a refused run's cast starts with: it names statefold
/// in the server's log, and tells this failure from others.
pub(super) const REFUSED: &str = "statefold: a transition of effects was refused, key ";

/// The statement running `run`, and its binds. Its one column is `1` when
/// everything was written; it returns no row when the key was taken.
pub(super) fn statement<'a>(run: &'a EffectsWrite<'a>) -> (String, Vec<Bind<'a>>) {
    let q = Postgres::quote_ident;
    let mut p = Params::<Postgres>::new();
    let mut binds: Vec<Bind<'a>> = Vec::new();
    let (k, key) = (q("k"), q("key"));

    let (key_bind, outcome, at, ttl) = (p.next(), p.next(), p.next(), p.next());
    binds.extend([
        (&run.key, LogicalType::Text),
        (&run.outcome, LogicalType::Json),
        (&run.at, LogicalType::Timestamp),
        (&run.ttl, LogicalType::I64),
    ]);
    let claim = render::insert_if_absent::<Postgres>(
        IDEMPOTENCY,
        &["key", "outcome", "created_at", "expires_at"],
        &[key_bind, outcome, at.clone(), format!("{} + {ttl}", Postgres::NOW_MILLIS)],
        " ON CONFLICT DO NOTHING",
    );
    let mut ctes = vec![format!("{k} AS ({claim} RETURNING {key})")];

    let mut applied = Vec::new();
    for (i, (def, write)) in run.transitions.iter().enumerate() {
        let (u, e) = (format!("u{i}"), format!("e{i}"));
        let update = render::update_record(def, &def.states[write.state], &mut p);
        binds.extend(write.update_binds());
        let event = render::insert_event_select(def, &u, &mut p);
        binds.extend(write.event_select_binds());
        ctes.push(format!(
            "{} AS ({update} AND EXISTS (SELECT 1 FROM {k}) RETURNING {}, {})",
            q(&u),
            q("id"),
            q("version")
        ));
        ctes.push(format!("{} AS ({event} RETURNING {})", q(&e), q("id")));
        applied.push(format!("(SELECT count(*) FROM {})", q(&e)));
    }

    if !run.outgoing.is_empty() {
        let (m, n) = (q("m"), q("n"));
        let rows: Vec<String> = run
            .outgoing
            .iter()
            .enumerate()
            .map(|(row, [id, kind, key, body])| {
                binds.extend([
                    (id, LogicalType::Text),
                    (kind, LogicalType::Text),
                    (key, LogicalType::Text),
                    (body, LogicalType::Json),
                ]);
                format!("({row}, {}, {}, {}, {})", p.next(), p.next(), p.next(), p.next())
            })
            .collect();
        let values = ["message_id", "kind", "key", "body"].map(|c| format!("{m}.{}", q(c))).join(", ");
        ctes.push(format!(
            "{} AS (INSERT INTO {} ({}) SELECT {values}, {k}.{key}, 0, 0, {OUTBOX_PENDING}, {at} \
             FROM {k}, (VALUES {}) AS {m} ({n}, {}) ORDER BY {m}.{n})",
            q("o"),
            q(OUTBOX),
            list::<Postgres>(OUTBOX_WRITE),
            rows.join(", "),
            list::<Postgres>(["message_id", "kind", "key", "body"]),
        ));
    }

    let mut columns = vec![if applied.is_empty() {
        "CAST(1 AS BIGINT)".to_owned()
    } else {
        format!(
            "CAST(CASE WHEN {} = {} THEN '1' ELSE '{}' || {k}.{key} END AS BIGINT)",
            applied.join(" + "),
            applied.len(),
            REFUSED.replace('\'', "''"),
        )
    }];
    if !run.notify.is_empty() {
        let c = q("c");
        let channels: Vec<String> = run
            .notify
            .iter()
            .map(|channel| {
                binds.push((channel, LogicalType::Text));
                format!("({})", p.next())
            })
            .collect();
        ctes.push(format!(
            "{} AS (SELECT pg_notify({c}.{c}, '') FROM {k}, (VALUES {}) AS {c} ({c}))",
            q("notified"),
            channels.join(", ")
        ));
        // Read, so that it runs (a CTE that modifies nothing runs only when read).
        columns.push(format!("(SELECT count(*) FROM {})", q("notified")));
    }
    (format!("WITH {} SELECT {} FROM {k}", ctes.join(", "), columns.join(", ")), binds)
}

/// Whether `error` is a run's statement aborting itself: a transition was refused.
pub(super) fn refused(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|db| db.code().as_deref() == Some("22P02") && db.message().contains(REFUSED))
}
