//! A database made for one benchmark and removed after it: a temporary file
//! on SQLite, a database of its own on the PostgreSQL or MySQL server.

use crate::{BoxError, Db, Order};
use sqlx::{Executor, MySqlPool, PgPool};
use statefold::{Backend, MySql, Postgres, Sqlite, Store};
use std::path::PathBuf;

pub(crate) struct Scratch {
    db: Db,
    /// The URL every pool of the benchmark connects to.
    pub(crate) url: String,
    place: Place,
}

enum Place {
    File(PathBuf),
    Postgres { server: PgPool, name: String },
    MySql { server: MySqlPool, name: String },
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server = base[authority..].find('/').map_or(base, |i| &base[..authority + i]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

impl Scratch {
    /// Creates the database and the machine's tables.
    pub(crate) async fn create(db: Db, server: Option<&str>, tag: &str) -> Result<Self, BoxError> {
        let name = format!("sf_bench_{tag}_{}", std::process::id());
        let (url, place) = match (db, server) {
            (Db::Sqlite, _) => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                (format!("sqlite://{}", path.display()), Place::File(path))
            }
            (Db::Postgres, Some(server_url)) => {
                let server = PgPool::connect(server_url).await?;
                server.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await?;
                (with_database(server_url, &name), Place::Postgres { server, name })
            }
            (Db::MySql, Some(server_url)) => {
                let server = MySqlPool::connect(server_url).await?;
                server.execute(format!("CREATE DATABASE `{name}`").as_str()).await?;
                (with_database(server_url, &name), Place::MySql { server, name })
            }
            (_, None) => return Err(format!("{} needs a server URL", db.label()).into()),
        };
        let scratch = Self { db, url, place };
        scratch.create_tables().await?;
        Ok(scratch)
    }

    async fn create_tables(&self) -> Result<(), BoxError> {
        async fn create<B: Backend>(url: &str) -> Result<(), BoxError> {
            let store = Store::<Order, B>::connect(url).await?;
            store.create_tables().await?;
            store.pool().close().await;
            Ok(())
        }
        match self.db {
            Db::Sqlite => create::<Sqlite>(&self.url).await,
            Db::Postgres => create::<Postgres>(&self.url).await,
            Db::MySql => create::<MySql>(&self.url).await,
        }
    }

    /// Empties the machine's tables (ids start at 1 again): a fresh file on SQLite.
    pub(crate) async fn reset(&self) -> Result<(), BoxError> {
        match &self.place {
            Place::File(path) => {
                remove_files(path);
                self.create_tables().await?;
            }
            Place::Postgres { .. } => {
                let pool = PgPool::connect(&self.url).await?;
                pool.execute(r#"TRUNCATE "orders", "order_events" RESTART IDENTITY"#).await?;
                pool.close().await;
            }
            Place::MySql { .. } => {
                let pool = MySqlPool::connect(&self.url).await?;
                pool.execute("TRUNCATE TABLE `orders`").await?;
                pool.execute("TRUNCATE TABLE `order_events`").await?;
                pool.close().await;
            }
        }
        Ok(())
    }

    pub(crate) async fn remove(self) -> Result<(), BoxError> {
        match self.place {
            Place::File(path) => remove_files(&path),
            Place::Postgres { server, name } => {
                server.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await?;
                server.close().await;
            }
            Place::MySql { server, name } => {
                server.execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str()).await?;
                server.close().await;
            }
        }
        Ok(())
    }
}

/// Removes an SQLite database and its WAL files.
fn remove_files(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.to_path_buf().into_os_string();
        file.push(suffix);
        // A missing file (no WAL yet, say) is fine.
        let _ = std::fs::remove_file(file);
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_only() {
        assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("mysql://root@h:3306", "x"), "mysql://root@h:3306/x");
        assert_eq!(with_database("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    }
}
