//! A lease in `statefold_leases`: one run per consumer and shard (or per
//! outbox dispatcher) at a time across processes, expiring by the
//! database's clock.

use crate::backend::render::{Params, LEASES};
use crate::backend::Backend;
use crate::error::Error;
use crate::schema::LogicalType;
use crate::value::Value;
use sqlx::Pool;
use std::time::Duration;

/// The statements on `statefold_leases`. Times are the database's
/// ([`Backend::NOW_MILLIS`]), never a process's: instances whose clocks
/// disagree, or a clock stepped back, cannot extend or steal a lease.
struct Sql {
    /// Takes or renews a lease held by the owner or expired. Binds: owner,
    /// ttl (ms), stream, consumer, owner.
    take: String,
    /// Creates a lease unless one exists. Binds: stream, consumer, owner, ttl (ms).
    create: String,
    /// Gives a lease up. Binds: stream, consumer, owner.
    release: String,
}

impl Sql {
    fn new<B: Backend>() -> Self {
        let q = B::quote_ident;
        let now = B::NOW_MILLIS;
        let key = |p: &mut Params<B>| format!("{} = {} AND {} = {}", q("stream"), p.next(), q("consumer"), p.next());
        let take = {
            let mut p = Params::<B>::new();
            let (owner, ttl) = (p.next(), p.next());
            let key = key(&mut p);
            let me = p.next();
            format!(
                "UPDATE {} SET {o} = {owner}, {e} = {now} + {ttl} WHERE {key} AND ({o} = {me} OR {e} < {now})",
                q(LEASES),
                o = q("owner"),
                e = q("expires_at"),
            )
        };
        let create = {
            let mut p = Params::<B>::new();
            let (stream, consumer, owner, ttl) = (p.next(), p.next(), p.next(), p.next());
            B::insert_if_absent(
                LEASES,
                &["stream", "consumer", "owner", "expires_at"],
                &[stream, consumer, owner, format!("{now} + {ttl}")],
                "stream",
            )
        };
        let release = {
            let mut p = Params::<B>::new();
            let key = key(&mut p);
            format!("DELETE FROM {} WHERE {key} AND {} = {}", q(LEASES), q("owner"), p.next())
        };
        Self { take, create, release }
    }
}

/// One run's claim on a consumer (and shard), or on an outbox: its owner
/// is the run, so two runs of one `Consumer` value, or a run and a
/// rebuild, exclude each other.
pub(crate) struct Lease<B: Backend> {
    pool: Pool<B::Db>,
    /// Who asks, for errors: the machine, or the outbox.
    what: &'static str,
    sql: Sql,
    stream: Value,
    consumer: Value,
    owner: Value,
}

impl<B: Backend> Lease<B> {
    /// The lease of `consumer` on `stream` (an events table, or the outbox);
    /// `what` names the asker in errors.
    pub(crate) fn new(pool: Pool<B::Db>, what: &'static str, stream: &str, consumer: &str) -> Self {
        Self {
            pool,
            what,
            sql: Sql::new::<B>(),
            stream: Value::Text(stream.to_owned()),
            consumer: Value::Text(consumer.to_owned()),
            owner: Value::Text(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// The owner this run writes in the lease.
    pub(crate) fn owner(&self) -> &str {
        match &self.owner {
            Value::Text(owner) => owner,
            _ => "",
        }
    }

    fn fail(&self, error: sqlx::Error) -> Error {
        crate::backend::failure::<B>(error, self.what, None)
    }

    /// Takes the lease for `ttl`, or renews it; `false` while another run
    /// holds it unexpired.
    pub(crate) async fn take(&self, ttl: Duration) -> Result<bool, Error> {
        let mut conn = self.pool.acquire().await?;
        let ttl = Value::I64(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2));
        let take = [
            (&self.owner, LogicalType::Text),
            (&ttl, LogicalType::I64),
            (&self.stream, LogicalType::Text),
            (&self.consumer, LogicalType::Text),
            (&self.owner, LogicalType::Text),
        ];
        if B::execute_with(&mut conn, &self.sql.take, &take).await.map_err(|e| self.fail(e))? == 1 {
            return Ok(true);
        }
        let create = [
            (&self.stream, LogicalType::Text),
            (&self.consumer, LogicalType::Text),
            (&self.owner, LogicalType::Text),
            (&ttl, LogicalType::I64),
        ];
        // Whether the row was created is not to be told by the count (MySQL
        // counts a duplicate as found): taking it again says who holds it.
        B::execute_with(&mut conn, &self.sql.create, &create).await.map_err(|e| self.fail(e))?;
        Ok(B::execute_with(&mut conn, &self.sql.take, &take).await.map_err(|e| self.fail(e))? == 1)
    }

    /// Gives the lease up, if this run holds it.
    pub(crate) async fn release(&self) -> Result<(), Error> {
        let mut conn = self.pool.acquire().await?;
        let binds =
            [(&self.stream, LogicalType::Text), (&self.consumer, LogicalType::Text), (&self.owner, LogicalType::Text)];
        B::execute_with(&mut conn, &self.sql.release, &binds).await.map_err(|e| self.fail(e))?;
        Ok(())
    }
}
