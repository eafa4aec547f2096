//! The hand-written side: what a sqlx expert writes for "place", "pay order
//! 42" and "ship order 42" against the tables statefold creates (the DDL of
//! `Store::create_tables`), with no library in between. It is not a copy of
//! statefold's SQL: each backend gets the fewest round trips it allows.
//!
//! Every command writes the same row and event values as statefold would
//! (the benchmark checks it with `Store::history` and `Store::audit` before
//! timing), and gives its caller the record's new version (an ETag). Unlike
//! statefold it does not hand back the whole row: where the row is not free
//! (MySQL) a service needs no second read to answer.
//! Legality lives in the `WHERE` clause; the edges of this workload have one
//! source each, so `status = 'placed'` is the `status IN (sources)` test (an
//! edge with several sources would also need the old status for
//! `from_status`). A command that changes nothing fails; finding out why (a
//! second query) is off the measured path, as it is for statefold.

use crate::BoxError;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use sqlx::{MySqlPool, PgPool, SqlitePool};
use std::future::Future;

/// The commands of the workloads, each a separate call by order id. `place`
/// gives the new order's id, the others its new version. The `_if` forms are
/// If-Match: they change the order only while it is still at `version` (the
/// ETag the client saw), in the state the command leaves.
pub(crate) trait Orders: Clone + Send + Sync + 'static {
    fn place(&self, customer: String, amount_cents: i64) -> impl Future<Output = Result<i64, BoxError>> + Send;
    fn pay(&self, id: i64, payment_ref: String) -> impl Future<Output = Result<i64, BoxError>> + Send;
    fn ship(&self, id: i64, tracking: String) -> impl Future<Output = Result<i64, BoxError>> + Send;
    fn pay_if(&self, id: i64, version: i64, payment_ref: String) -> impl Future<Output = Result<i64, BoxError>> + Send;
    fn ship_if(&self, id: i64, version: i64, tracking: String) -> impl Future<Output = Result<i64, BoxError>> + Send;
}

/// A time at the precision all three backends store (microseconds).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn refused(id: i64, wanted: &str) -> BoxError {
    format!("order {id} is not {wanted} (or does not exist)").into()
}

// PostgreSQL: one statement per command, a data-modifying CTE. The row write
// and the event insert are one atomic statement, so no BEGIN/COMMIT round
// trips; the event takes the row's new version and time from RETURNING, and
// `now()` (the transaction's time) stamps both alike.

const PG_PLACE: &str = "\
WITH placed AS (
    INSERT INTO orders (status, version, created_at, updated_at, customer, amount_cents)
    VALUES ('placed', 1, now(), now(), $1, $2)
    RETURNING id, version, created_at)
INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at)
SELECT id, 'placed', NULL, 'placed', version,
       jsonb_build_object('customer', $1::text, 'amount_cents', $2::bigint), '{}', created_at
FROM placed
RETURNING record_id";

const PG_PAY: &str = "\
WITH paid AS (
    UPDATE orders SET status = 'paid', version = version + 1, updated_at = now(), payment_ref = $2
    WHERE id = $1 AND status = 'placed'
    RETURNING id, version, updated_at)
INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at)
SELECT id, 'paid', 'placed', 'paid', version, jsonb_build_object('payment_ref', $2::text), '{}', updated_at
FROM paid
RETURNING version";

const PG_SHIP: &str = "\
WITH shipped AS (
    UPDATE orders SET status = 'shipped', version = version + 1, updated_at = now(), tracking = $2
    WHERE id = $1 AND status = 'paid'
    RETURNING id, version, updated_at)
INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at)
SELECT id, 'shipped', 'paid', 'shipped', version, jsonb_build_object('tracking', $2::text), '{}', updated_at
FROM shipped
RETURNING version";

/// If-Match: the same statements, guarded by the version the client saw too.
const PG_PAY_IF: &str = "\
WITH paid AS (
    UPDATE orders SET status = 'paid', version = version + 1, updated_at = now(), payment_ref = $2
    WHERE id = $1 AND status = 'placed' AND version = $3
    RETURNING id, version, updated_at)
INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at)
SELECT id, 'paid', 'placed', 'paid', version, jsonb_build_object('payment_ref', $2::text), '{}', updated_at
FROM paid
RETURNING version";

const PG_SHIP_IF: &str = "\
WITH shipped AS (
    UPDATE orders SET status = 'shipped', version = version + 1, updated_at = now(), tracking = $2
    WHERE id = $1 AND status = 'paid' AND version = $3
    RETURNING id, version, updated_at)
INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at)
SELECT id, 'shipped', 'paid', 'shipped', version, jsonb_build_object('tracking', $2::text), '{}', updated_at
FROM shipped
RETURNING version";

/// Hand-written sqlx on PostgreSQL.
#[derive(Clone)]
pub(crate) struct HandPg(pub(crate) PgPool);

impl HandPg {
    async fn transition(&self, sql: &str, id: i64, value: String, wanted: &str) -> Result<i64, BoxError> {
        let version: Option<(i64,)> = sqlx::query_as(sql).bind(id).bind(value).fetch_optional(&self.0).await?;
        Ok(version.ok_or_else(|| refused(id, wanted))?.0)
    }

    async fn transition_if(&self, sql: &str, id: i64, seen: i64, value: String, wanted: &str) -> Result<i64, BoxError> {
        let query = sqlx::query_as(sql).bind(id).bind(value).bind(seen);
        let version: Option<(i64,)> = query.fetch_optional(&self.0).await?;
        Ok(version.ok_or_else(|| refused(id, wanted))?.0)
    }
}

impl Orders for HandPg {
    async fn place(&self, customer: String, amount_cents: i64) -> Result<i64, BoxError> {
        let (id,): (i64,) = sqlx::query_as(PG_PLACE).bind(customer).bind(amount_cents).fetch_one(&self.0).await?;
        Ok(id)
    }

    async fn pay(&self, id: i64, payment_ref: String) -> Result<i64, BoxError> {
        self.transition(PG_PAY, id, payment_ref, "placed").await
    }

    async fn ship(&self, id: i64, tracking: String) -> Result<i64, BoxError> {
        self.transition(PG_SHIP, id, tracking, "paid").await
    }

    async fn pay_if(&self, id: i64, version: i64, payment_ref: String) -> Result<i64, BoxError> {
        self.transition_if(PG_PAY_IF, id, version, payment_ref, "placed").await
    }

    async fn ship_if(&self, id: i64, version: i64, tracking: String) -> Result<i64, BoxError> {
        self.transition_if(PG_SHIP_IF, id, version, tracking, "paid").await
    }
}

// MySQL / MariaDB: no data-modifying CTE and no UPDATE .. RETURNING, so a
// command is one transaction: BEGIN, the guarded write, the event insert,
// COMMIT (4 round trips). The UPDATE sets `version = LAST_INSERT_ID(version
// + 1)`: the server reports that value in the statement's OK packet (sqlx's
// `last_insert_id`), so the event learns the new version without a read.
// The alternatives cost more or leave the tables statefold creates: SELECT ..
// FOR UPDATE before the UPDATE is a fifth round trip; a stored procedure or
// a trigger would be one round trip but is schema of its own; several
// statements in one text would need values formatted into SQL; and
// `autocommit = 0` on the pool's connections (saving BEGIN) changes what
// every other user of the pool gets.

const MY_PLACE: &str = "INSERT INTO orders (status, version, created_at, updated_at, customer, amount_cents) \
                        VALUES ('placed', 1, ?, ?, ?, ?)";
const MY_PLACE_EVENT: &str =
    "INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
     VALUES (?, 'placed', NULL, 'placed', 1, JSON_OBJECT('customer', ?, 'amount_cents', ?), '{}', ?)";
const MY_PAY: &str = "UPDATE orders SET status = 'paid', version = LAST_INSERT_ID(version + 1), updated_at = ?, \
                      payment_ref = ? WHERE id = ? AND status = 'placed'";
const MY_PAY_EVENT: &str =
    "INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
     VALUES (?, 'paid', 'placed', 'paid', ?, JSON_OBJECT('payment_ref', ?), '{}', ?)";
const MY_SHIP: &str = "UPDATE orders SET status = 'shipped', version = LAST_INSERT_ID(version + 1), updated_at = ?, \
                       tracking = ? WHERE id = ? AND status = 'paid'";
const MY_PAY_IF: &str = "UPDATE orders SET status = 'paid', version = LAST_INSERT_ID(version + 1), updated_at = ?, \
                         payment_ref = ? WHERE id = ? AND status = 'placed' AND version = ?";
const MY_SHIP_IF: &str = "UPDATE orders SET status = 'shipped', version = LAST_INSERT_ID(version + 1), \
                          updated_at = ?, tracking = ? WHERE id = ? AND status = 'paid' AND version = ?";
const MY_SHIP_EVENT: &str =
    "INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
     VALUES (?, 'shipped', 'paid', 'shipped', ?, JSON_OBJECT('tracking', ?), '{}', ?)";

/// A time as a MySQL `DATETIME(6)` in UTC.
fn mysql_now() -> NaiveDateTime {
    now().naive_utc()
}

fn mysql_id(id: u64) -> Result<i64, BoxError> {
    Ok(i64::try_from(id)?)
}

/// Hand-written sqlx on MySQL and MariaDB.
#[derive(Clone)]
pub(crate) struct HandMySql(pub(crate) MySqlPool);

impl HandMySql {
    /// A guarded write and its event; `seen` adds the If-Match guard.
    async fn transition(
        &self,
        (update, event): (&str, &str),
        id: i64,
        seen: Option<i64>,
        value: String,
        wanted: &str,
    ) -> Result<i64, BoxError> {
        let at = mysql_now();
        let mut tx = self.0.begin().await?;
        let mut query = sqlx::query(update).bind(at).bind(&value).bind(id);
        if let Some(seen) = seen {
            query = query.bind(seen);
        }
        let done = query.execute(&mut *tx).await?;
        if done.rows_affected() != 1 {
            return Err(refused(id, wanted));
        }
        let version = mysql_id(done.last_insert_id())?;
        sqlx::query(event).bind(id).bind(version).bind(value).bind(at).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(version)
    }
}

impl Orders for HandMySql {
    async fn place(&self, customer: String, amount_cents: i64) -> Result<i64, BoxError> {
        let at = mysql_now();
        let mut tx = self.0.begin().await?;
        let done = sqlx::query(MY_PLACE).bind(at).bind(at).bind(&customer).bind(amount_cents).execute(&mut *tx).await?;
        let id = mysql_id(done.last_insert_id())?;
        let event = sqlx::query(MY_PLACE_EVENT).bind(id).bind(customer).bind(amount_cents).bind(at);
        event.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn pay(&self, id: i64, payment_ref: String) -> Result<i64, BoxError> {
        self.transition((MY_PAY, MY_PAY_EVENT), id, None, payment_ref, "placed").await
    }

    async fn ship(&self, id: i64, tracking: String) -> Result<i64, BoxError> {
        self.transition((MY_SHIP, MY_SHIP_EVENT), id, None, tracking, "paid").await
    }

    async fn pay_if(&self, id: i64, version: i64, payment_ref: String) -> Result<i64, BoxError> {
        self.transition((MY_PAY_IF, MY_PAY_EVENT), id, Some(version), payment_ref, "placed").await
    }

    async fn ship_if(&self, id: i64, version: i64, tracking: String) -> Result<i64, BoxError> {
        self.transition((MY_SHIP_IF, MY_SHIP_EVENT), id, Some(version), tracking, "paid").await
    }
}

// SQLite: one writer at a time, so a command is BEGIN IMMEDIATE (take the
// write lock up front: a deferred BEGIN that later upgrades can fail with
// SQLITE_BUSY instead of waiting), the guarded write, the event insert,
// COMMIT. The UPDATE returns the new version; the new order's id comes from
// `last_insert_rowid`, with no RETURNING needed.

const LITE_PLACE: &str = "INSERT INTO orders (status, version, created_at, updated_at, customer, amount_cents) \
                          VALUES ('placed', 1, ?, ?, ?, ?)";
const LITE_PLACE_EVENT: &str =
    "INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
     VALUES (?, 'placed', NULL, 'placed', 1, json_object('customer', ?, 'amount_cents', ?), '{}', ?)";
const LITE_PAY: &str = "UPDATE orders SET status = 'paid', version = version + 1, updated_at = ?, payment_ref = ? \
                        WHERE id = ? AND status = 'placed' RETURNING version";
const LITE_PAY_EVENT: &str =
    "INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
     VALUES (?, 'paid', 'placed', 'paid', ?, json_object('payment_ref', ?), '{}', ?)";
const LITE_SHIP: &str = "UPDATE orders SET status = 'shipped', version = version + 1, updated_at = ?, tracking = ? \
                         WHERE id = ? AND status = 'paid' RETURNING version";
const LITE_PAY_IF: &str = "UPDATE orders SET status = 'paid', version = version + 1, updated_at = ?, \
                           payment_ref = ? WHERE id = ? AND status = 'placed' AND version = ? RETURNING version";
const LITE_SHIP_IF: &str = "UPDATE orders SET status = 'shipped', version = version + 1, updated_at = ?, \
                            tracking = ? WHERE id = ? AND status = 'paid' AND version = ? RETURNING version";
const LITE_SHIP_EVENT: &str =
    "INSERT INTO order_events (record_id, kind, from_status, to_status, version, payload, metadata, created_at) \
     VALUES (?, 'shipped', 'paid', 'shipped', ?, json_object('tracking', ?), '{}', ?)";

/// A time as statefold stores it in SQLite (RFC 3339 text, microseconds).
pub(crate) fn sqlite_now() -> String {
    now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Hand-written sqlx on SQLite.
#[derive(Clone)]
pub(crate) struct HandSqlite(pub(crate) SqlitePool);

impl HandSqlite {
    /// A guarded write and its event; `seen` adds the If-Match guard.
    async fn transition(
        &self,
        (update, event): (&str, &str),
        id: i64,
        seen: Option<i64>,
        value: String,
        wanted: &str,
    ) -> Result<i64, BoxError> {
        let at = sqlite_now();
        let mut tx = self.0.begin_with("BEGIN IMMEDIATE").await?;
        let mut query = sqlx::query_as(update).bind(&at).bind(&value).bind(id);
        if let Some(seen) = seen {
            query = query.bind(seen);
        }
        let version: Option<(i64,)> = query.fetch_optional(&mut *tx).await?;
        let (version,) = version.ok_or_else(|| refused(id, wanted))?;
        sqlx::query(event).bind(id).bind(version).bind(value).bind(at).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(version)
    }
}

impl Orders for HandSqlite {
    async fn place(&self, customer: String, amount_cents: i64) -> Result<i64, BoxError> {
        let at = sqlite_now();
        let mut tx = self.0.begin_with("BEGIN IMMEDIATE").await?;
        let done =
            sqlx::query(LITE_PLACE).bind(&at).bind(&at).bind(&customer).bind(amount_cents).execute(&mut *tx).await?;
        let id = done.last_insert_rowid();
        let event = sqlx::query(LITE_PLACE_EVENT).bind(id).bind(customer).bind(amount_cents).bind(at);
        event.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn pay(&self, id: i64, payment_ref: String) -> Result<i64, BoxError> {
        self.transition((LITE_PAY, LITE_PAY_EVENT), id, None, payment_ref, "placed").await
    }

    async fn ship(&self, id: i64, tracking: String) -> Result<i64, BoxError> {
        self.transition((LITE_SHIP, LITE_SHIP_EVENT), id, None, tracking, "paid").await
    }

    async fn pay_if(&self, id: i64, version: i64, payment_ref: String) -> Result<i64, BoxError> {
        self.transition((LITE_PAY_IF, LITE_PAY_EVENT), id, Some(version), payment_ref, "placed").await
    }

    async fn ship_if(&self, id: i64, version: i64, tracking: String) -> Result<i64, BoxError> {
        self.transition((LITE_SHIP_IF, LITE_SHIP_EVENT), id, Some(version), tracking, "paid").await
    }
}
