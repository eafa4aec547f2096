//! Backends: one trait ties a database to its SQL dialect.
//!
//! A [`Backend`] is a unit struct ([`Sqlite`], [`Postgres`], [`MySql`]) with
//! an associated sqlx [`Database`](sqlx::Database). Everything that differs
//! between databases lives behind it, one folder per database: identifier
//! quoting, column types, the DDL of a machine's tables, how values are bound
//! and read, how a write is sent (one statement on PostgreSQL, a few inside
//! one transaction elsewhere), how its log is read without skipping late
//! commits ([`log`]), its clock, its notifications and its error codes. The
//! [`Store`](crate::Store) and the streams are written once against the trait.

pub(crate) mod log;
pub(crate) mod render;
mod scratch;
mod write;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use log::Blocker;
pub(crate) use write::{Write, Written};

#[cfg(feature = "mysql")]
pub use mysql::MySql;
#[cfg(feature = "postgres")]
pub use postgres::Postgres;
#[cfg(feature = "sqlite")]
pub use sqlite::Sqlite;

use crate::error::Error;
use crate::schema::{ColumnDef, LogicalType, MachineDef};
use crate::value::Value;
use sqlx::error::BoxDynError;
use sqlx::pool::PoolOptions;
use sqlx::{Database, Executor, IntoArguments, Pool};
use std::fmt;
use std::future::Future;

/// A database statefold can persist machines in, with its SQL dialect.
///
/// Implemented by [`Sqlite`], [`Postgres`] and [`MySql`] (each behind the
/// cargo feature of the same name); sealed, so the store can rely on every
/// backend behaving as documented. The rendering methods are public so that
/// tools (migrations, reviews) can print exactly the schema the store expects.
///
/// ```
/// use statefold::{Backend, Machine, Sqlite};
///
/// #[derive(Machine)]
/// #[machine(table = "lamps")]
/// enum Lamp {
///     #[initial]
///     #[from(On)]
///     Off,
///     #[from(Off)]
///     On { watts: i32 },
/// }
///
/// let ddl = Sqlite::create_tables_sql(Lamp::DEF);
/// assert!(ddl[0].starts_with("CREATE TABLE IF NOT EXISTS `lamps`"));
/// assert!(ddl[0].contains("`watts` INTEGER"));
/// assert!(ddl[1].starts_with("CREATE TABLE IF NOT EXISTS `lamp_events`"));
/// ```
pub trait Backend: sealed::Sealed + Copy + Default + fmt::Debug + Send + Sync + 'static {
    /// The sqlx database driving this backend.
    type Db: Database;

    /// The backend's name, as shown in errors (`SQLite`, `PostgreSQL`, `MySQL`).
    const NAME: &'static str;

    /// The pool settings the store uses: no ping before every acquire (sqlx
    /// replaces broken connections anyway, and a ping is a round trip).
    ///
    /// Start from these when building a pool for [`Store::new`](crate::Store::new).
    ///
    /// ```
    /// use statefold::{Backend, Sqlite};
    /// let options = Sqlite::pool_options().max_connections(4);
    /// assert!(!options.get_test_before_acquire());
    /// ```
    fn pool_options() -> PoolOptions<Self::Db> {
        PoolOptions::new().test_before_acquire(false)
    }

    /// Opens a pool for `url`, checking first that the URL is meant for this backend.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] when the URL has another scheme or does not
    /// parse; [`Error::Database`] when the database cannot be reached.
    fn connect(url: &str) -> impl Future<Output = Result<Pool<Self::Db>, Error>> + Send;

    /// Quotes an identifier (table, column, index or constraint name).
    ///
    /// ```
    /// use statefold::{Backend, Sqlite};
    /// assert_eq!(Sqlite::quote_ident("order"), "`order`");
    /// assert_eq!(Sqlite::quote_ident("a`b"), "`a``b`");
    /// ```
    fn quote_ident(ident: &str) -> String;

    /// The SQL type storing a logical type.
    ///
    /// ```
    /// use statefold::{Backend, LogicalType, Sqlite};
    /// assert_eq!(Sqlite::column_type(LogicalType::Timestamp), "TEXT");
    /// ```
    fn column_type(ty: LogicalType) -> &'static str;

    /// The definition of a payload column, as in `CREATE TABLE` or `ADD COLUMN`.
    ///
    /// ```
    /// use statefold::{Backend, Machine, Sqlite};
    /// #[derive(Machine)]
    /// enum Order { #[initial] Placed { amount_cents: i64 } }
    /// let column = Order::DEF.column("amount_cents").unwrap();
    /// assert_eq!(Sqlite::column_sql(column), "`amount_cents` INTEGER NOT NULL");
    /// ```
    fn column_sql(column: &ColumnDef) -> String {
        let null = if column.nullable { "" } else { " NOT NULL" };
        format!("{} {}{null}", Self::quote_ident(column.name), Self::column_type(column.ty))
    }

    /// The named `CHECK` constraint limiting `status` to the machine's states
    /// (their stored names, current and earlier).
    fn status_check_sql(def: &MachineDef) -> String {
        let names: Vec<String> = def
            .states
            .iter()
            .flat_map(|s| std::iter::once(s.db_name).chain(s.was.iter().copied()))
            .map(Self::string_literal)
            .collect();
        format!(
            "CONSTRAINT {} CHECK ({} IN ({}))",
            Self::quote_ident(&render::status_check_name(def)),
            Self::quote_ident("status"),
            names.join(", ")
        )
    }

    /// `CREATE TABLE IF NOT EXISTS` for the records table: `id`, `status`,
    /// `version`, `created_at`, `updated_at`, then one column per payload column.
    fn records_table_sql(def: &MachineDef) -> String;

    /// `CREATE TABLE IF NOT EXISTS` for the events table: `id` (the global
    /// position), `record_id`, `kind`, `from_status`, `to_status`, `version`
    /// (unique per record), `payload`, `metadata`, `created_at`, and what the
    /// backend needs for gap-safe reads.
    fn events_table_sql(def: &MachineDef) -> String;

    /// The indexes the store's queries use, as `CREATE INDEX IF NOT EXISTS`
    /// statements: `(status, id)` for listing by status, and one per
    /// `#[column(index)]` column. Empty where the backend declares indexes
    /// inside `CREATE TABLE` instead.
    fn indexes_sql(def: &MachineDef) -> Vec<String>;

    /// Every statement creating the machine's tables and indexes, in order.
    /// Each is idempotent (`IF NOT EXISTS`).
    fn create_tables_sql(def: &MachineDef) -> Vec<String> {
        let mut statements = vec![Self::records_table_sql(def), Self::events_table_sql(def)];
        statements.extend(Self::indexes_sql(def));
        statements
    }

    /// `CREATE TABLE IF NOT EXISTS` for the tables every machine's consumers
    /// and effects share, in order: `statefold_cursors` (one durable,
    /// forward-only position per stream and consumer), `statefold_leases`
    /// (which instance runs a consumer or an outbox dispatcher, until when),
    /// `statefold_dead_letters` (events a consumer gave up on, with the
    /// error), `statefold_repairs` (rows rewritten from their events by
    /// [`Store::repair`](crate::Store::repair)), `statefold_idempotency` (the
    /// keys effects ran under, with their outcomes) and `statefold_outbox`
    /// (messages and requests to send, and those given up on). Include them in a migration once
    /// per database, or create them at run time with
    /// [`Store::create_support_tables`](crate::Store::create_support_tables).
    ///
    /// ```
    /// use statefold::{Backend, Postgres};
    /// let ddl = Postgres::support_tables_sql();
    /// assert!(ddl[0].starts_with(r#"CREATE TABLE IF NOT EXISTS "statefold_cursors""#));
    /// assert!(ddl[1].starts_with(r#"CREATE TABLE IF NOT EXISTS "statefold_leases""#));
    /// assert!(ddl[2].starts_with(r#"CREATE TABLE IF NOT EXISTS "statefold_dead_letters""#));
    /// assert!(ddl[4].starts_with(r#"CREATE TABLE IF NOT EXISTS "statefold_idempotency""#));
    /// assert!(ddl[5].starts_with(r#"CREATE TABLE IF NOT EXISTS "statefold_outbox""#));
    /// ```
    fn support_tables_sql() -> Vec<String>;

    /// A string literal, for the few constants DDL cannot bind.
    #[doc(hidden)]
    fn string_literal(value: &str) -> String {
        format!("'{}'", value.replace('\'', "''"))
    }

    /// The `n`th (1-based) bind parameter.
    #[doc(hidden)]
    fn placeholder(n: usize) -> String;

    /// Whether an insert or a transition is one atomic statement, so that it
    /// needs no explicit transaction of its own.
    #[doc(hidden)]
    const ONE_STATEMENT: bool;

    /// The statement opening the store's write transactions (`None`: the default `BEGIN`).
    #[doc(hidden)]
    const BEGIN_WRITE: Option<&'static str>;

    /// What locks the rows a `SELECT` reads until the transaction ends
    /// (empty where the write transaction already holds the database's lock).
    #[doc(hidden)]
    const FOR_UPDATE: &'static str = " FOR UPDATE";

    /// The statement opening a read-only transaction over one consistent snapshot.
    #[doc(hidden)]
    const BEGIN_SNAPSHOT: &'static str;

    /// The backend's prepared write statements for one machine.
    #[doc(hidden)]
    type Plan: Send + Sync + 'static;

    /// Renders the write statements of every state of `def`, once per store.
    #[doc(hidden)]
    fn plan(def: &'static MachineDef) -> Self::Plan;

    /// Runs a query, reading each row as values of `types`.
    #[doc(hidden)]
    fn fetch_all<'a>(
        conn: &'a mut Conn<Self>,
        sql: &'a str,
        binds: &'a [Bind<'a>],
        types: &'a [LogicalType],
    ) -> impl Future<Output = Result<Vec<Vec<Value>>, sqlx::Error>> + Send + 'a;

    /// Runs a query and keeps its rows as the driver returns them, to be
    /// read with [`read_rows`](Self::read_rows), perhaps in another task.
    #[doc(hidden)]
    fn fetch_rows<'a>(
        conn: &'a mut Conn<Self>,
        sql: &'a str,
        binds: &'a [Bind<'a>],
    ) -> impl Future<Output = Result<Vec<DbRow<Self>>, sqlx::Error>> + Send + 'a;

    /// Reads rows as values of `types`.
    #[doc(hidden)]
    fn read_rows(rows: &[DbRow<Self>], types: &[LogicalType]) -> Result<Vec<Vec<Value>>, sqlx::Error>;

    /// Runs a statement without binds or results (DDL).
    #[doc(hidden)]
    fn execute<'a>(conn: &'a mut Conn<Self>, sql: &'a str)
        -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'a;

    /// Writes a record and its event. `Ok(None)`: the guard of a transition
    /// matched no row (the caller finds out why).
    #[doc(hidden)]
    fn write<'a>(
        conn: &'a mut Conn<Self>,
        plan: &'a Self::Plan,
        write: &'a Write,
    ) -> impl Future<Output = Result<Option<Written>, sqlx::Error>> + Send + 'a;

    /// The query listing a table's columns (binds: table), as the schema
    /// check reads them; one name a row, lower case.
    #[doc(hidden)]
    const COLUMNS_SQL: &'static str;

    /// The query listing a table's named indexes (binds: table); one name a row.
    #[doc(hidden)]
    const INDEXES_SQL: &'static str;

    /// What a database error means, from the backend's error codes.
    #[doc(hidden)]
    fn classify(error: &sqlx::Error) -> Failure;

    /// How stream readers avoid skipping events that commit late (ADR 0002).
    #[doc(hidden)]
    type Log: log::Log<Self>;

    /// An SQL expression for the database's clock, in milliseconds since
    /// the Unix epoch: leases expire by it, so that instances whose clocks
    /// disagree still agree on who holds a lease.
    #[doc(hidden)]
    const NOW_MILLIS: &'static str;

    /// Runs a statement with binds, returning the number of rows it changed.
    #[doc(hidden)]
    fn execute_with<'a>(
        conn: &'a mut Conn<Self>,
        sql: &'a str,
        binds: &'a [Bind<'a>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'a;

    /// `INSERT INTO table (columns) VALUES (values)` that does nothing when
    /// the row's key exists (`key` is its first key column).
    #[doc(hidden)]
    fn insert_if_absent(table: &str, columns: &[&str], values: &[String], key: &str) -> String;

    /// What makes a read inside a transaction see the latest committed row
    /// and wait for a transaction still writing it (MySQL's repeatable-read
    /// snapshot would show an older one): appended to a `SELECT`.
    #[doc(hidden)]
    const SHARE_LOCK: &'static str = "";

    /// Whether writes can wake other processes' readers (PostgreSQL
    /// `NOTIFY`, sent by the write's own statement and delivered at commit).
    #[doc(hidden)]
    const NOTIFIES: bool = false;

    /// Listens on `channel`, on the one listening connection this process
    /// keeps per pool: each item is one wake-up. `None` where the database
    /// has no notifications.
    #[doc(hidden)]
    fn listen(
        pool: &Pool<Self::Db>,
        channel: &str,
    ) -> impl Future<Output = Result<Option<WakeUps>, sqlx::Error>> + Send {
        let _ = (pool, channel);
        std::future::ready(Ok(None))
    }
}

/// Wake-ups from another process, as [`Backend::listen`] yields them.
#[doc(hidden)]
pub(crate) type WakeUps = futures::stream::BoxStream<'static, ()>;

mod sealed {
    pub trait Sealed {}
}

/// The connection type of a backend.
pub(crate) type Conn<B> = <<B as Backend>::Db as Database>::Connection;

/// A row as the driver returns it.
pub(crate) type DbRow<B> = <<B as Backend>::Db as Database>::Row;

/// A value to bind, with the column type it goes to (a `NULL` needs one).
pub(crate) type Bind<'a> = (&'a Value, LogicalType);

/// A database error, as the store reports it.
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// A unique constraint rejected the write.
    Unique,
    /// The named table does not exist.
    MissingTable(String),
    /// The database cannot represent a value (PostgreSQL text with NUL).
    Unrepresentable,
    /// A lock wait timed out (a reader waited on a slow writer).
    LockTimeout,
    /// The user lacks a privilege the statement needs.
    AccessDenied,
    /// The named column does not exist: the code is ahead of the migrations.
    MissingColumn(String),
    /// Anything else.
    Other,
}

/// How a concrete backend binds and reads values; the generic query helpers
/// below are written once against it.
pub(crate) trait Codec: Backend {
    /// Adds one bind parameter.
    fn bind<'q>(
        args: &mut <Self::Db as Database>::Arguments<'q>,
        value: &'q Value,
        ty: LogicalType,
    ) -> Result<(), BoxDynError>;

    /// Reads column `index` of a row as a value of `ty` (or `Null`).
    fn read(row: &<Self::Db as Database>::Row, index: usize, ty: LogicalType) -> Result<Value, sqlx::Error>;
}

fn arguments<'q, B: Codec>(binds: &[Bind<'q>]) -> Result<<B::Db as Database>::Arguments<'q>, sqlx::Error> {
    let mut args = <B::Db as Database>::Arguments::default();
    for &(value, ty) in binds {
        B::bind(&mut args, value, ty).map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

fn read_row<B: Codec>(row: &<B::Db as Database>::Row, types: &[LogicalType]) -> Result<Vec<Value>, sqlx::Error> {
    types.iter().enumerate().map(|(i, &ty)| B::read(row, i, ty)).collect()
}

/// The [`Backend`] methods that run queries, the same for every backend:
/// each delegates to the generic helpers below, written once against [`Codec`].
macro_rules! query_methods {
    () => {
        fn fetch_all<'a>(
            conn: &'a mut Conn<Self>,
            sql: &'a str,
            binds: &'a [Bind<'a>],
            types: &'a [LogicalType],
        ) -> impl std::future::Future<Output = Result<Vec<Vec<Value>>, sqlx::Error>> + Send + 'a {
            super::fetch_all::<Self>(conn, sql, binds, types)
        }

        fn fetch_rows<'a>(
            conn: &'a mut Conn<Self>,
            sql: &'a str,
            binds: &'a [Bind<'a>],
        ) -> impl std::future::Future<Output = Result<Vec<super::DbRow<Self>>, sqlx::Error>> + Send + 'a {
            super::fetch_rows::<Self>(conn, sql, binds)
        }

        fn read_rows(rows: &[super::DbRow<Self>], types: &[LogicalType]) -> Result<Vec<Vec<Value>>, sqlx::Error> {
            super::read_rows::<Self>(rows, types)
        }

        async fn execute(conn: &mut Conn<Self>, sql: &str) -> Result<(), sqlx::Error> {
            super::execute::<Self>(conn, sql, &[]).await.map(drop)
        }
    };
}
pub(crate) use query_methods;

/// Runs a query and reads every row.
pub(crate) async fn fetch_all<B: Codec>(
    conn: &mut Conn<B>,
    sql: &str,
    binds: &[Bind<'_>],
    types: &[LogicalType],
) -> Result<Vec<Vec<Value>>, sqlx::Error>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
{
    read_rows::<B>(&fetch_rows::<B>(conn, sql, binds).await?, types)
}

/// Runs a query and keeps its rows unread.
pub(crate) async fn fetch_rows<B: Codec>(
    conn: &mut Conn<B>,
    sql: &str,
    binds: &[Bind<'_>],
) -> Result<Vec<DbRow<B>>, sqlx::Error>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
{
    sqlx::query_with(sql, arguments::<B>(binds)?).fetch_all(&mut *conn).await
}

/// Reads rows as values of `types`.
pub(crate) fn read_rows<B: Codec>(rows: &[DbRow<B>], types: &[LogicalType]) -> Result<Vec<Vec<Value>>, sqlx::Error> {
    rows.iter().map(|row| read_row::<B>(row, types)).collect()
}

/// Runs a query and reads its row, if any.
pub(crate) async fn fetch_optional<B: Codec>(
    conn: &mut Conn<B>,
    sql: &str,
    binds: &[Bind<'_>],
    types: &[LogicalType],
) -> Result<Option<Vec<Value>>, sqlx::Error>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
{
    let row = sqlx::query_with(sql, arguments::<B>(binds)?).fetch_optional(&mut *conn).await?;
    row.map(|row| read_row::<B>(&row, types)).transpose()
}

/// Runs a statement and returns the database's summary of it.
pub(crate) async fn execute<B: Codec>(
    conn: &mut Conn<B>,
    sql: &str,
    binds: &[Bind<'_>],
) -> Result<<B::Db as Database>::QueryResult, sqlx::Error>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
{
    sqlx::query_with(sql, arguments::<B>(binds)?).execute(&mut *conn).await
}

/// An event position read back from the database.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn position(value: Value) -> Result<i64, sqlx::Error> {
    match value {
        Value::I64(position) => Ok(position),
        other => Err(sqlx::Error::Decode(format!("expected an event position, found {}", other.kind()).into())),
    }
}

/// A database error as the store and streams report it; `id` is the record
/// written, if known.
pub(crate) fn failure<B: Backend>(error: sqlx::Error, machine: &'static str, id: Option<&Value>) -> Error {
    let message =
        |error: &sqlx::Error| error.as_database_error().map_or_else(|| error.to_string(), |db| db.message().to_owned());
    match B::classify(&error) {
        Failure::Unique => Error::Duplicate { machine, id: id.map(crate::fold::id_text), message: message(&error) },
        Failure::MissingTable(table) => Error::MissingTable { table },
        Failure::MissingColumn(column) => {
            Error::SchemaMismatch { machine, problems: vec![format!("column `{column}` does not exist")] }
        }
        Failure::Unrepresentable => Error::Unrepresentable { backend: B::NAME, message: message(&error) },
        Failure::LockTimeout | Failure::AccessDenied | Failure::Other => Error::Database(error),
    }
}

/// Rejects a URL whose scheme is not one of `schemes`, naming what was expected.
fn check_scheme(backend: &'static str, url: &str, schemes: &[&str], example: &str) -> Result<(), Error> {
    let scheme = url.split_once(':').map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme) if schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) => Ok(()),
        found => Err(Error::InvalidUrl {
            backend,
            reason: format!(
                "{}; expected {}, e.g. `{example}`",
                match found {
                    Some(s) => format!("the scheme is `{s}:`"),
                    None => "the URL has no scheme".to_owned(),
                },
                schemes.iter().map(|s| format!("`{s}:`")).collect::<Vec<_>>().join(" or "),
            ),
        }),
    }
}

/// Wraps an options parse error: the URL had the right scheme but is malformed.
fn bad_url(backend: &'static str, error: &sqlx::Error) -> Error {
    Error::InvalidUrl { backend, reason: error.to_string() }
}
