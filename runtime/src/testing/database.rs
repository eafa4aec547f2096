//! A database of its own for each test, on each backend, dropped afterwards:
//! what `#[statefold::test]` expands to.

use crate::backend::Backend;
use crate::machine::Machine;
use crate::migrate::Dialect;
use crate::store::Store;
use sqlx::Pool;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Requires every backend's URL: when set (to anything but `0` or `false`),
/// a test whose server URL is unset fails instead of being ignored. `CI`
/// does the same unless this variable says `0`.
pub const REQUIRE_ALL: &str = "STATEFOLD_TEST_REQUIRE_ALL";

/// A backend a test can have a fresh database on: embedded SQLite in a
/// temporary file, or a uniquely named database on the server named by
/// [`URL_VAR`](Self::URL_VAR).
pub trait TestBackend: Dialect {
    /// The environment variable naming the test server (a URL whose
    /// database the tests' databases are created from), or `None` for an
    /// embedded backend that needs no server.
    const URL_VAR: Option<&'static str>;

    /// A URL of the server, as an example in messages.
    #[doc(hidden)]
    const EXAMPLE_URL: &'static str;

    /// The statement dropping the database `name` (quoted here), ending
    /// whatever sessions still use it where the server allows.
    #[doc(hidden)]
    fn drop_database_sql(name: &str) -> String;

    /// Runs the migrations under `root` (its dialect's directory) on the
    /// database at `url`.
    #[doc(hidden)]
    fn apply_migrations(root: PathBuf, url: String) -> impl Future<Output = Result<(), String>> + Send;
}

/// A fresh database for one test: its pool and URL. `#[statefold::test]`
/// creates one per backend and drops it when the test ends, passed or
/// failed; clones share it.
#[derive(Debug)]
pub struct TestDatabase<B: Backend> {
    pool: Pool<B::Db>,
    url: String,
    name: String,
    create_tables: bool,
}

impl<B: Backend> Clone for TestDatabase<B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            url: self.url.clone(),
            name: self.name.clone(),
            create_tables: self.create_tables,
        }
    }
}

impl<B: TestBackend> TestDatabase<B> {
    /// A pool connected to the database.
    pub fn pool(&self) -> &Pool<B::Db> {
        &self.pool
    }

    /// The database's URL, for tools that open connections of their own.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (the file's, on SQLite): `sf_<test>_<pid>_<nanos>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store of machine `M` over this database (no tables created).
    pub fn store<M: Machine>(&self) -> Store<M, B> {
        Store::new(self.pool.clone())
    }

    /// The store a test's parameter receives: its machine's tables created
    /// unless the schema came from migrations.
    #[doc(hidden)]
    pub async fn __store<M: Machine>(&self) -> Store<M, B> {
        let store = self.store::<M>();
        if self.create_tables {
            if let Err(e) = store.create_tables().await {
                panic!("the tables of `{}` could not be created: {e}", M::DEF.name);
            }
        }
        store
    }
}

/// Where a test's schema comes from.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Schema {
    /// Each store's tables, created when the test receives it, and the support tables.
    Tables,
    /// The migrations under this directory (one subdirectory per dialect).
    Migrations(&'static str),
}

/// What to remove when a test is done.
enum Cleanup {
    File(PathBuf),
    Database { admin: String, sql: String },
}

impl Cleanup {
    async fn run<B: TestBackend>(self) -> Result<(), String> {
        match self {
            Self::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    // A file SQLite never created is fine.
                    let _ = std::fs::remove_file(file);
                }
                Ok(())
            }
            Self::Database { admin, sql } => {
                let pool = B::pool_options().max_connections(1).connect(&admin).await.map_err(|e| e.to_string())?;
                let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
                let dropped = B::execute(&mut conn, &sql).await.map_err(|e| e.to_string());
                drop(conn);
                pool.close().await;
                dropped
            }
        }
    }
}

/// A name unique to this run: `sf_<test>_<pid>_<nanos>`, within the 63
/// bytes PostgreSQL keeps.
pub fn unique_name(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let test: String = test.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(28).collect();
    format!("sf_{}_{}_{nanos}", test.to_ascii_lowercase(), std::process::id())
}

/// The server's URL with its database replaced by `name` (query kept).
pub fn database_url(server: &str, name: &str) -> String {
    let (base, query) = server.split_once('?').map_or((server, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Creates the test's database and returns it with what removes it.
async fn create<B: TestBackend>(test: &str, schema: Schema) -> Result<(TestDatabase<B>, Cleanup), String> {
    let name = unique_name(test);
    let (url, cleanup) = match B::URL_VAR {
        None => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            (format!("sqlite://{}", path.display()), Cleanup::File(path))
        }
        Some(var) => {
            let server = match std::env::var(var) {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    return Err(format!(
                        "{var} is unset: this test needs a {} server, e.g. {var}={} \
                         (with `CI` or `{REQUIRE_ALL}` set, no backend is skipped)",
                        B::NAME,
                        B::EXAMPLE_URL
                    ))
                }
            };
            let pool = B::pool_options().max_connections(1).connect(&server).await;
            let pool = pool.map_err(|e| format!("{var}: {} cannot be reached: {e}", B::NAME))?;
            let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
            let created = B::execute(&mut conn, &format!("CREATE DATABASE {}", B::quote_ident(&name))).await;
            drop(conn);
            pool.close().await;
            created.map_err(|e| format!("the test database `{name}` could not be created: {e}"))?;
            (database_url(&server, &name), Cleanup::Database { admin: server, sql: B::drop_database_sql(&name) })
        }
    };
    let ready = async {
        let pool = B::connect(&url).await.map_err(|e| format!("the test database `{name}` does not open: {e}"))?;
        let database = TestDatabase { pool, url: url.clone(), name: name.clone(), create_tables: false };
        match schema {
            Schema::Tables => {
                let mut conn = database.pool.acquire().await.map_err(|e| e.to_string())?;
                for sql in B::support_tables_sql() {
                    let created = B::execute(&mut conn, &sql).await;
                    created.map_err(|e| format!("the support tables could not be created: {e}"))?;
                }
                drop(conn);
                Ok(TestDatabase { create_tables: true, ..database })
            }
            Schema::Migrations(root) => {
                B::apply_migrations(PathBuf::from(root), url.clone()).await?;
                Ok(database)
            }
        }
    };
    match ready.await {
        Ok(database) => Ok((database, cleanup)),
        Err(e) => {
            let _ = cleanup.run::<B>().await;
            Err(e)
        }
    }
}

/// Runs one test on backend `B`: creates its database and schema, runs
/// `body` on a multi-threaded runtime, then drops the database whether the
/// body returned or panicked (the panic goes on afterwards).
///
/// # Panics
/// When the database cannot be created or dropped, or its URL is unset.
#[doc(hidden)]
pub fn run<B, F, Fut>(test: &str, schema: Schema, body: F) -> Fut::Output
where
    B: TestBackend,
    F: FnOnce(TestDatabase<B>) -> Fut,
    Fut: Future,
{
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = runtime().expect("a tokio runtime for the test");
    let (database, cleanup) = match runtime.block_on(create::<B>(test, schema)) {
        Ok(created) => created,
        Err(e) => panic!("{e}"),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| runtime.block_on(body(database))));
    // Ending the runtime closes every connection the test opened, so that
    // nothing holds the database (or a lock in it) when it is dropped.
    drop(runtime);
    let cleanup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| runtime.block_on(cleanup.run::<B>()));
    match (outcome, cleanup) {
        (Ok(output), Ok(())) => output,
        (Ok(_), Err(e)) => panic!("the test database could not be dropped: {e}"),
        (Err(panic), cleanup) => {
            if let Err(e) = cleanup {
                eprintln!("the test database could not be dropped: {e}");
            }
            resume_unwind(panic)
        }
    }
}
