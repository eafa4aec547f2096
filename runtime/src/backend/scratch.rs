//! Each backend's part in giving a test a database of its own
//! ([`TestBackend`]): the server's variable, how a database is dropped, and
//! how migrations run on it.

use crate::migrate::Migrations;
use crate::testing::TestBackend;
use std::path::PathBuf;

async fn apply<B: TestBackend>(root: PathBuf, url: String) -> Result<(), String>
where
    <B::Db as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    let migrations = Migrations::<B>::new(&root);
    match migrations.apply(&url).await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("the migrations in `{}` could not be applied: {e}", migrations.dir().display())),
    }
}

#[cfg(feature = "sqlite")]
impl TestBackend for super::Sqlite {
    const URL_VAR: Option<&'static str> = None;
    const EXAMPLE_URL: &'static str = "sqlite://test.db";

    fn drop_database_sql(_: &str) -> String {
        String::new()
    }

    async fn apply_migrations(root: PathBuf, url: String) -> Result<(), String> {
        apply::<Self>(root, url).await
    }
}

#[cfg(feature = "postgres")]
impl TestBackend for super::Postgres {
    const URL_VAR: Option<&'static str> = Some("STATEFOLD_TEST_POSTGRES_URL");
    const EXAMPLE_URL: &'static str = "postgres://postgres@127.0.0.1:5432/test";

    fn drop_database_sql(name: &str) -> String {
        use super::Backend as _;
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", Self::quote_ident(name))
    }

    async fn apply_migrations(root: PathBuf, url: String) -> Result<(), String> {
        apply::<Self>(root, url).await
    }
}

#[cfg(feature = "mysql")]
impl TestBackend for super::MySql {
    const URL_VAR: Option<&'static str> = Some("STATEFOLD_TEST_MYSQL_URL");
    const EXAMPLE_URL: &'static str = "mysql://root@127.0.0.1:3306/test";

    fn drop_database_sql(name: &str) -> String {
        use super::Backend as _;
        format!("DROP DATABASE IF EXISTS {}", Self::quote_ident(name))
    }

    async fn apply_migrations(root: PathBuf, url: String) -> Result<(), String> {
        apply::<Self>(root, url).await
    }
}
