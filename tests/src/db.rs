//! A fresh database per test, on each backend.
//!
//! SQLite tests always run, on a temporary file. PostgreSQL and MySQL tests
//! run against the servers named by `STATEFOLD_TEST_POSTGRES_URL` and
//! `STATEFOLD_TEST_MYSQL_URL`: each test creates its own database
//! (`sf_<test>_<pid>_<nanos>`) and drops it when done, so tests never share
//! data. When a URL is unset at build time, `build.rs` has those tests
//! compiled as ignored, naming the variable, unless `CI` is set: then a
//! missing URL fails them. (Run ignored anyway, a test prints why it skips.)

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, Database, Pool};
use statefold::testing::__private::{database_url, unique_name};
use statefold::{Backend, Machine, MySql, Postgres, Sqlite, Store, Tx};
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;

/// A value bound into a hand-written statement.
#[derive(Debug, Clone)]
pub enum Arg {
    /// An integer.
    I64(i64),
    /// A string.
    Text(String),
}

/// What the suite needs from a backend beyond the library: a fresh database,
/// hand-written SQL to corrupt data behind the store's back, and outages.
pub trait TestBackend: Backend {
    /// Creates a fresh database for the test `test`; `None` when the test skips.
    fn create(test: &str) -> impl Future<Output = Option<TestDb<Self>>> + Send;

    /// The `n`th (1-based) bind parameter of a hand-written statement.
    fn param(n: usize) -> String;

    /// The `n`th bind parameter, as JSON (bound as text).
    fn json_param(n: usize) -> String {
        Self::param(n)
    }

    /// Whether text can hold the NUL character.
    const STORES_NUL: bool;

    /// The session's clock in milliseconds since the epoch, written
    /// independently of the library's: the oracle of the lease test.
    const CLOCK_MS: &'static str;

    /// Runs a hand-written statement, returning the rows it affected.
    fn run_sql(
        pool: &Pool<Self::Db>,
        sql: &str,
        args: Vec<Arg>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Runs a hand-written statement inside a transaction (a consumer's handler).
    fn run_in(
        tx: &mut Tx<'static, Self>,
        sql: &str,
        args: Vec<Arg>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Runs a hand-written query returning one integer inside a transaction.
    fn integer_in(tx: &mut Tx<'static, Self>, sql: &str) -> impl Future<Output = i64> + Send;

    /// Runs a hand-written query whose rows are one integer each.
    fn integers(pool: &Pool<Self::Db>, sql: &str) -> impl Future<Output = Result<Vec<i64>, sqlx::Error>> + Send;

    /// The first column of each row a query returns, decoded as `String`
    /// the way a user's own query through `store.pool()` would.
    fn texts(pool: &Pool<Self::Db>, sql: &str) -> impl Future<Output = Result<Vec<String>, sqlx::Error>> + Send;

    /// A pool on the database at `url` whose sessions see the database's
    /// clock `seconds` behind the real one, as a server whose clock
    /// disagrees with the application's would; `None` where a session
    /// cannot shift its clock (only MySQL's can).
    fn skewed_pool(url: &str, seconds: i64) -> impl Future<Output = Option<Pool<Self::Db>>> + Send {
        let _ = (url, seconds);
        std::future::ready(None)
    }

    /// Has the server kill every other connection to the database at `url`,
    /// as a restart would, and returns how many once they are gone; `None`
    /// where there is no server (SQLite).
    fn kill_connections(url: &str) -> impl Future<Output = Option<usize>> + Send;
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb<B: Backend> {
    /// A pool connected to it.
    pub pool: Pool<B::Db>,
    /// Its URL, for tools that open their own connections.
    pub url: String,
    cleanup: Option<Cleanup>,
}

impl<B: TestBackend> TestDb<B> {
    /// A store over this database, its tables created.
    ///
    /// # Panics
    /// When the tables cannot be created.
    pub async fn store<M: Machine>(&self) -> Store<M, B> {
        let store = Store::new(self.pool.clone());
        store.create_tables().await.expect("tables are created");
        store
    }

    /// A store over this database whose tables do not exist.
    pub fn bare_store<M: Machine>(&self) -> Store<M, B> {
        Store::new(self.pool.clone())
    }

    /// Runs a hand-written statement.
    ///
    /// # Panics
    /// When the statement fails.
    pub async fn execute(&self, sql: &str, args: Vec<Arg>) -> u64 {
        B::run_sql(&self.pool, sql, args).await.unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
    }

    /// Has the server kill every connection to this database, as a restart
    /// would ([`TestBackend::kill_connections`]); other pools (a consumer's)
    /// meet theirs dead on next use, while [`pool`](Self::pool) drops its
    /// own at once so that the test does not. `None` on SQLite.
    ///
    /// # Panics
    /// When the server cannot be reached, or a killed connection does not
    /// end within 10 s. Call it while nothing else uses
    /// [`pool`](Self::pool).
    pub async fn kill_connections(&self) -> Option<usize> {
        let killed = B::kill_connections(&self.url).await?;
        // A dead connection fails its ping, and the pool closes it on release.
        let mut idle = Vec::new();
        while let Some(conn) = self.pool.try_acquire() {
            idle.push(conn);
        }
        for conn in &mut idle {
            let _ = conn.ping().await;
        }
        Some(killed)
    }
}

/// What to remove when a test is done.
enum Cleanup {
    Files(PathBuf),
    Postgres { admin: PgConnectOptions, name: String },
    MySql { admin: MySqlConnectOptions, name: String },
}

impl<B: Backend> Drop for TestDb<B> {
    fn drop(&mut self) {
        let Some(cleanup) = self.cleanup.take() else { return };
        // Drop runs inside the test's runtime, which cannot block on a
        // future: the cleanup gets a thread and a runtime of its own.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(cleanup.run());
        })
        .join();
        if done.is_err() && !std::thread::panicking() {
            panic!("the test database could not be dropped");
        }
    }
}

impl Cleanup {
    async fn run(self) {
        match self {
            Self::Files(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    // A file that was never created is fine.
                    let _ = std::fs::remove_file(file);
                }
            }
            Self::Postgres { admin, name } => {
                let pool = PgPoolOptions::new().max_connections(1).connect_with(admin).await.expect("admin connection");
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", Postgres::quote_ident(&name));
                sqlx::query(&sql).execute(&pool).await.expect("database dropped");
                pool.close().await;
            }
            Self::MySql { admin, name } => {
                let pool =
                    MySqlPoolOptions::new().max_connections(1).connect_with(admin).await.expect("admin connection");
                let sql = format!("DROP DATABASE IF EXISTS {}", MySql::quote_ident(&name));
                sqlx::query(&sql).execute(&pool).await.expect("database dropped");
                pool.close().await;
            }
        }
    }
}

/// The server URL in `var`; `None` (with the reason printed) when the test skips.
///
/// # Panics
/// When the URL is unset and `CI` is set: in CI no backend test may skip.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is required when CI is set: point it at the test server")
        }
        _ => {
            let example = if var == POSTGRES_URL {
                "postgres://postgres@127.0.0.1:5432/test"
            } else if var == crate::nats::NATS_URL {
                "nats://127.0.0.1:4222"
            } else {
                "mysql://root@127.0.0.1:3306/test"
            };
            eprintln!("skipped: {var} is not set; this test needs that server, e.g. {var}={example}");
            None
        }
    }
}

/// The variable naming the PostgreSQL test server.
pub const POSTGRES_URL: &str = "STATEFOLD_TEST_POSTGRES_URL";
/// The variable naming the MySQL test server.
pub const MYSQL_URL: &str = "STATEFOLD_TEST_MYSQL_URL";

impl TestBackend for Sqlite {
    const CLOCK_MS: &'static str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

    async fn create(test: &str) -> Option<TestDb<Self>> {
        let path = std::env::temp_dir().join(format!("{}.db", unique_name(test)));
        let url = format!("sqlite://{}", path.display());
        let pool = Self::connect(&url).await.expect("SQLite opens a temporary file");
        Some(TestDb { pool, url, cleanup: Some(Cleanup::Files(path)) })
    }

    fn param(_: usize) -> String {
        "?".into()
    }

    const STORES_NUL: bool = true;

    async fn run_sql(pool: &Pool<Self::Db>, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(bind::<Self::Db>(sqlx::query(sql), args).execute(pool).await?.rows_affected())
    }

    async fn run_in(tx: &mut Tx<'static, Self>, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(bind::<Self::Db>(sqlx::query(sql), args).execute(&mut **tx).await?.rows_affected())
    }

    async fn integer_in(tx: &mut Tx<'static, Self>, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&mut **tx).await.expect("an integer")
    }

    async fn integers(pool: &Pool<Self::Db>, sql: &str) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(sql).fetch_all(pool).await
    }

    async fn texts(pool: &Pool<Self::Db>, sql: &str) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(sql).fetch_all(pool).await
    }

    async fn kill_connections(_: &str) -> Option<usize> {
        None
    }
}

impl TestBackend for Postgres {
    const CLOCK_MS: &'static str = "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)";

    async fn create(test: &str) -> Option<TestDb<Self>> {
        let server = server_url(POSTGRES_URL)?;
        let admin = PgConnectOptions::from_str(&server).expect("a PostgreSQL URL");
        let name = unique_name(test);
        let pool = PgPoolOptions::new().max_connections(1).connect_with(admin.clone()).await.expect("PostgreSQL is up");
        let sql = format!("CREATE DATABASE {}", Self::quote_ident(&name));
        sqlx::query(&sql).execute(&pool).await.expect("database created");
        pool.close().await;
        let pool = Self::pool_options().connect_with(admin.clone().database(&name)).await.expect("database opens");
        let url = database_url(&server, &name);
        Some(TestDb { pool, url, cleanup: Some(Cleanup::Postgres { admin, name }) })
    }

    fn param(n: usize) -> String {
        format!("${n}")
    }

    fn json_param(n: usize) -> String {
        format!("CAST(${n} AS JSONB)")
    }

    const STORES_NUL: bool = false;

    async fn run_sql(pool: &Pool<Self::Db>, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(bind::<Self::Db>(sqlx::query(sql), args).execute(pool).await?.rows_affected())
    }

    async fn run_in(tx: &mut Tx<'static, Self>, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(bind::<Self::Db>(sqlx::query(sql), args).execute(&mut **tx).await?.rows_affected())
    }

    async fn integer_in(tx: &mut Tx<'static, Self>, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&mut **tx).await.expect("an integer")
    }

    async fn integers(pool: &Pool<Self::Db>, sql: &str) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(sql).fetch_all(pool).await
    }

    async fn texts(pool: &Pool<Self::Db>, sql: &str) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(sql).fetch_all(pool).await
    }

    async fn kill_connections(url: &str) -> Option<usize> {
        let mut admin = PgConnection::connect(url).await.expect("PostgreSQL is up");
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut admin)
        .await
        .expect("connections listed");
        let mut killed = 0;
        for pid in pids {
            // With a timeout, it returns once the backend is gone (or false if it already was).
            let gone: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)")
                .bind(pid)
                .fetch_one(&mut admin)
                .await
                .expect("backend terminated");
            killed += usize::from(gone);
        }
        let _ = admin.close().await;
        Some(killed)
    }
}

impl TestBackend for MySql {
    const CLOCK_MS: &'static str = "CAST(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(3)) * 1000 AS SIGNED)";

    async fn create(test: &str) -> Option<TestDb<Self>> {
        let server = server_url(MYSQL_URL)?;
        let admin = MySqlConnectOptions::from_str(&server).expect("a MySQL URL");
        let name = unique_name(test);
        let pool = MySqlPoolOptions::new().max_connections(1).connect_with(admin.clone()).await.expect("MySQL is up");
        let sql = format!("CREATE DATABASE {}", Self::quote_ident(&name));
        sqlx::query(&sql).execute(&pool).await.expect("database created");
        pool.close().await;
        let pool = Self::pool_options().connect_with(admin.clone().database(&name)).await.expect("database opens");
        let url = database_url(&server, &name);
        Some(TestDb { pool, url, cleanup: Some(Cleanup::MySql { admin, name }) })
    }

    fn param(_: usize) -> String {
        "?".into()
    }

    const STORES_NUL: bool = true;

    async fn run_sql(pool: &Pool<Self::Db>, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(bind::<Self::Db>(sqlx::query(sql), args).execute(pool).await?.rows_affected())
    }

    async fn run_in(tx: &mut Tx<'static, Self>, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(bind::<Self::Db>(sqlx::query(sql), args).execute(&mut **tx).await?.rows_affected())
    }

    async fn integer_in(tx: &mut Tx<'static, Self>, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&mut **tx).await.expect("an integer")
    }

    async fn integers(pool: &Pool<Self::Db>, sql: &str) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(sql).fetch_all(pool).await
    }

    async fn texts(pool: &Pool<Self::Db>, sql: &str) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(sql).fetch_all(pool).await
    }

    async fn skewed_pool(url: &str, seconds: i64) -> Option<Pool<Self::Db>> {
        let options = MySqlConnectOptions::from_str(url).expect("a MySQL URL");
        let pool = Self::pool_options()
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // Fixes the session's clock (`NOW()`) at `seconds` ago.
                    sqlx::query("SET timestamp = UNIX_TIMESTAMP() - ?").bind(seconds).execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .expect("database opens");
        Some(pool)
    }

    async fn kill_connections(url: &str) -> Option<usize> {
        let mut admin = MySqlConnection::connect(url).await.expect("MySQL is up");
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()",
        )
        .fetch_all(&mut admin)
        .await
        .expect("connections listed");
        for id in &ids {
            // A connection that ended on its own meanwhile is fine.
            let _ = sqlx::query("KILL ?").bind(id).execute(&mut admin).await;
        }
        // KILL only marks a connection: wait until each has ended.
        for _ in 0..500 {
            let mut left = 0;
            for id in &ids {
                let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.processlist WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut admin)
                    .await
                    .expect("connections listed");
                left += found;
            }
            if left == 0 {
                let _ = admin.close().await;
                return Some(ids.len());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("killed connections did not end");
    }
}

fn bind<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for arg in args {
        query = match arg {
            Arg::I64(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
        };
    }
    query
}
