//! Migrations generated from the machines' declarations.
//!
//! A migration directory holds one directory per dialect (`sqlite/`,
//! `postgres/`, `mysql/`) of sqlx-compatible files,
//! `<version>_<description>.sql`, plus a snapshot of the schema they reach
//! ([`SNAPSHOT_FILE`]). [`Migrations::generate`] compares the snapshot with
//! the code and writes only the next step; [`Migrations::check`] fails when
//! they disagree; [`Migrations::apply`] runs pending files with sqlx's
//! migrator (locked, checksummed). The files also run with `sqlx migrate run`
//! and embed with `sqlx::migrate!()`.
//!
//! ```
//! # use statefold::Machine;
//! use statefold::migrate::{Generate, Generated, Migrations};
//! use statefold::Sqlite;
//!
//! #[derive(Machine)]
//! #[machine(table = "lamps")]
//! enum Lamp {
//!     #[initial]
//!     #[from(On)]
//!     Off,
//!     #[from(Off)]
//!     On { watts: i32 },
//! }
//!
//! let root = std::env::temp_dir().join(format!("statefold-doc-{}", std::process::id()));
//! let migrations = Migrations::<Sqlite>::new(&root);
//! let Generated::Written { path, .. } = migrations.generate(&[Lamp::DEF], &Generate::default())? else {
//!     panic!("a new machine needs a migration");
//! };
//! assert!(path.ends_with("sqlite/0001_create_lamps.sql"));
//! assert!(matches!(migrations.generate(&[Lamp::DEF], &Generate::default())?, Generated::UpToDate));
//! migrations.check(&[Lamp::DEF])?;
//! # std::fs::remove_dir_all(&root).unwrap();
//! # Ok::<(), statefold::migrate::MigrationError>(())
//! ```

mod dialect;
mod plan;
mod snapshot;

pub use dialect::Dialect;
pub use plan::{Change, EventChange, Plan, Unsupported};
pub use snapshot::{ColumnSnapshot, EventSnapshot, FieldSnapshot, MachineSnapshot, Snapshot, SNAPSHOT_FILE};

use crate::schema::MachineDef;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// What went wrong generating, checking or applying migrations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The snapshot file is not one statefold wrote.
    #[error("{path} is not a statefold snapshot ({source}); restore it from version control")]
    BadSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What did not parse.
        source: serde_json::Error,
    },
    /// The next migration would lose data, and `allow_destructive` was not set.
    #[error(
        "the next migration would lose data:\n{}\nset `Generate::allow_destructive` if that is intended",
        bullets(losses)
    )]
    Destructive {
        /// One line per loss.
        losses: Vec<String>,
    },
    /// A change to an event's payload that would leave events already
    /// stored undecodable: a new required field, a changed type, a removed
    /// or renamed field. Each says how to make it safe.
    #[error(
        "these changes would leave events already stored undecodable:\n{}\nmake each one safe as it says, then run `migrations generate` again",
        bullets(&refused.iter().map(ToString::to_string).collect::<Vec<_>>())
    )]
    Undecodable {
        /// The refused changes, each naming its state and field.
        refused: Vec<EventChange>,
    },
    /// A change no generated migration can make.
    #[error("these changes need a hand-written migration:\n{}", bullets(&unsupported.iter().map(ToString::to_string).collect::<Vec<_>>()))]
    Unsupported {
        /// What changed, and what to do.
        unsupported: Vec<Unsupported>,
    },
    /// The code and the migration directory disagree.
    #[error(
        "the migrations in {dir} are behind the code:\n{}\nrun `migrations generate` and commit the new file",
        bullets(changes)
    )]
    Drift {
        /// The dialect's migration directory.
        dir: PathBuf,
        /// One line per change the next migration would make.
        changes: Vec<String>,
    },
    /// A migration that was applied has been edited since.
    #[error(
        "migration {version} was applied, but its file has changed since: restore the file, and put new changes in a new migration"
    )]
    ChangedAfterApply {
        /// The migration's version.
        version: i64,
    },
    /// The database could not be reached, or a migration failed.
    #[error("applying migrations from {dir}: {source}")]
    Apply {
        /// The dialect's migration directory.
        dir: PathBuf,
        /// sqlx's error.
        source: sqlx::migrate::MigrateError,
    },
    /// The database URL is not for this dialect, or the database cannot be reached.
    #[error(transparent)]
    Connect(#[from] crate::Error),
}

/// One `  - ` line each.
pub(crate) fn bullets(lines: &[String]) -> String {
    lines.iter().map(|l| format!("  - {l}")).collect::<Vec<_>>().join("\n")
}

/// Options of [`Migrations::generate`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Generate {
    /// Write migrations that lose data (dropped columns or machines, changed types, removed states).
    pub allow_destructive: bool,
    /// The description in the file name; derived from the changes when `None`.
    pub name: Option<String>,
}

impl Generate {
    /// Allows (or not) migrations that lose data.
    #[must_use]
    pub fn allow_destructive(mut self, allow: bool) -> Self {
        self.allow_destructive = allow;
        self
    }

    /// Names the migration file.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// The outcome of [`Migrations::generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Generated {
    /// The code and the migrations agree: no file was written.
    UpToDate,
    /// Only the events' payloads changed, safely: the snapshot records them,
    /// and no SQL is needed, so no migration file was written.
    Recorded {
        /// What changed, one line each.
        changes: Vec<String>,
    },
    /// A migration was written.
    Written {
        /// The new file.
        path: PathBuf,
        /// What it changes, one line each.
        changes: Vec<String>,
    },
}

/// The outcome of [`Migrations::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The versions this run applied, in order (empty: nothing was pending).
    pub versions: Vec<i64>,
}

/// One dialect's migration directory.
#[derive(Debug, Clone)]
pub struct Migrations<D> {
    dir: PathBuf,
    dialect: PhantomData<D>,
}

impl<D: Dialect> Migrations<D> {
    /// The dialect's directory under `root` (e.g. `migrations/postgres`).
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self { dir: root.as_ref().join(D::DIR), dialect: PhantomData }
    }

    /// The dialect's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The schema the files reach (empty when there are none yet).
    ///
    /// # Errors
    /// When the snapshot cannot be read or parsed.
    pub fn snapshot(&self) -> Result<Snapshot, MigrationError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| MigrationError::BadSnapshot { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Snapshot::default()),
            Err(source) => Err(MigrationError::Io { path, source }),
        }
    }

    /// The changes from the files' schema to the code's.
    ///
    /// # Errors
    /// When the snapshot cannot be read.
    pub fn plan(&self, machines: &[&'static MachineDef]) -> Result<Plan, MigrationError> {
        Ok(Plan::new(&self.snapshot()?, machines))
    }

    /// The full schema of `machines` in this dialect, as one script.
    pub fn schema(machines: &[&'static MachineDef]) -> String {
        script(&dialect::statements::<D>(&Snapshot::default(), &Plan::new(&Snapshot::default(), machines)))
    }

    /// Writes the next migration, if the code changed since the last one.
    ///
    /// # Errors
    /// [`MigrationError::Destructive`] when the change loses data and
    /// `options.allow_destructive` is off; [`MigrationError::Unsupported`]
    /// for changes that need a hand-written migration; I/O errors. Nothing is
    /// written on error.
    pub fn generate(&self, machines: &[&'static MachineDef], options: &Generate) -> Result<Generated, MigrationError> {
        let old = self.snapshot()?;
        let plan = Plan::new(&old, machines);
        let refused = plan.refused();
        if !refused.is_empty() {
            return Err(MigrationError::Undecodable { refused });
        }
        if !plan.unsupported.is_empty() {
            return Err(MigrationError::Unsupported { unsupported: plan.unsupported });
        }
        let losses = plan.losses();
        if !losses.is_empty() && !options.allow_destructive {
            return Err(MigrationError::Destructive { losses });
        }
        if plan.changes.is_empty() {
            if plan.is_empty() {
                return Ok(Generated::UpToDate);
            }
            let snapshot = Snapshot::of(machines, old.version);
            let json = serde_json::to_string_pretty(&snapshot).expect("a snapshot always serialises");
            std::fs::create_dir_all(&self.dir)
                .map_err(|source| MigrationError::Io { path: self.dir.clone(), source })?;
            write(&self.dir.join(SNAPSHOT_FILE), &(json + "\n"))?;
            return Ok(Generated::Recorded { changes: event_lines(&plan) });
        }

        let version = old.version.max(self.last_file_version()?) + 1;
        let description = options.name.clone().unwrap_or_else(|| describe(&plan));
        let mut changes: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
        let mut text = String::from("-- Generated by statefold from the machines' declarations.\n");
        changes.extend(event_lines(&plan));
        for change in &changes {
            let _ = writeln!(text, "-- * {change}");
        }
        text.push('\n');
        text.push_str(&script(&dialect::statements::<D>(&old, &plan)));

        std::fs::create_dir_all(&self.dir).map_err(|source| MigrationError::Io { path: self.dir.clone(), source })?;
        let path = self.dir.join(file_name(version, &description));
        write(&path, &text)?;
        let snapshot = Snapshot::of(machines, version);
        let json = serde_json::to_string_pretty(&snapshot).expect("a snapshot always serialises");
        write(&self.dir.join(SNAPSHOT_FILE), &(json + "\n"))?;
        Ok(Generated::Written { path, changes })
    }

    /// Fails when the code changed since the last migration (for CI).
    ///
    /// # Errors
    /// [`MigrationError::Drift`] listing what the next migration would change.
    pub fn check(&self, machines: &[&'static MachineDef]) -> Result<(), MigrationError> {
        let plan = self.plan(machines)?;
        if plan.is_empty() {
            return Ok(());
        }
        let refused = plan.refused();
        if !refused.is_empty() {
            return Err(MigrationError::Undecodable { refused });
        }
        let mut changes: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
        changes.extend(plan.unsupported.iter().map(|u| format!("{u} (needs a hand-written migration)")));
        changes.extend(event_lines(&plan));
        Err(MigrationError::Drift { dir: self.dir.clone(), changes })
    }

    /// Applies the pending migrations to the database at `url`, in order,
    /// under sqlx's migration lock, recording each file's checksum.
    /// Applying twice is a no-op.
    ///
    /// # Errors
    /// [`MigrationError::ChangedAfterApply`] when an applied file was edited;
    /// [`MigrationError::Apply`] when a migration fails (it is rolled back
    /// where the database allows); connection errors.
    pub async fn apply(&self, url: &str) -> Result<Applied, MigrationError>
    where
        <D::Db as sqlx::Database>::Connection: sqlx::migrate::Migrate,
    {
        let apply_error = |source| MigrationError::Apply { dir: self.dir.clone(), source };
        let migrator = sqlx::migrate::Migrator::new(self.dir.as_path()).await.map_err(apply_error)?;
        let pool = D::connect(url).await?;
        let before = applied_versions::<D>(&pool).await.map_err(apply_error)?;
        let result = migrator.run(&pool).await;
        let after = applied_versions::<D>(&pool).await;
        pool.close().await;
        match result {
            Ok(()) => {
                let after = after.map_err(apply_error)?;
                Ok(Applied { versions: after.into_iter().filter(|v| !before.contains(v)).collect() })
            }
            Err(sqlx::migrate::MigrateError::VersionMismatch(version)) => {
                Err(MigrationError::ChangedAfterApply { version })
            }
            Err(source) => Err(apply_error(source)),
        }
    }

    fn last_file_version(&self) -> Result<i64, MigrationError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(MigrationError::Io { path: self.dir.clone(), source }),
        };
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (version, rest) = name.split_once('_')?;
                rest.ends_with(".sql").then(|| version.parse::<i64>().ok()).flatten()
            })
            .max()
            .unwrap_or(0))
    }
}

async fn applied_versions<D: Dialect>(pool: &sqlx::Pool<D::Db>) -> Result<Vec<i64>, sqlx::migrate::MigrateError>
where
    <D::Db as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    use sqlx::migrate::Migrate as _;
    let mut conn = pool.acquire().await?;
    conn.ensure_migrations_table().await?;
    Ok(conn.list_applied_migrations().await?.into_iter().map(|m| m.version).collect())
}

/// The plan's event changes, one line each.
fn event_lines(plan: &Plan) -> Vec<String> {
    plan.events.iter().map(ToString::to_string).collect()
}

fn write(path: &Path, text: &str) -> Result<(), MigrationError> {
    std::fs::write(path, text).map_err(|source| MigrationError::Io { path: path.to_owned(), source })
}

/// The statements as one script, each ending in `;`.
fn script(statements: &[String]) -> String {
    statements.iter().map(|s| format!("{s};\n")).collect()
}

/// The name of the migration that creates `machines` on an empty database
/// (`0001_create_orders.sql`), for the command line's help.
#[cfg(feature = "cli")]
pub(crate) fn first_file_name(machines: &[&'static MachineDef]) -> String {
    file_name(1, &describe(&Plan::new(&Snapshot::default(), machines)))
}

fn file_name(version: i64, description: &str) -> String {
    format!("{version:04}_{}.sql", sanitize(description))
}

/// A file-name description of the plan (the shared tables go unnamed: they
/// come with the first machine).
fn describe(plan: &Plan) -> String {
    let changes: Vec<&Change> = plan.changes.iter().filter(|c| !matches!(c, Change::CreateSupportTables)).collect();
    let created: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::CreateMachine { def } => Some(def.table),
            _ => None,
        })
        .collect();
    match changes.as_slice() {
        [] => "create_support_tables".to_owned(),
        [one] => one.slug(),
        all if created.len() == all.len() => format!("create_{}", created.join("_")),
        [first, ..] => format!("{}_and_more", first.slug()),
    }
}

/// Lowercase letters, digits and `_` only, so the name is valid everywhere.
fn sanitize(description: &str) -> String {
    let cleaned: String =
        description.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    let trimmed = cleaned.trim_matches('_');
    if trimmed.is_empty() {
        "migration".to_owned()
    } else {
        trimmed.chars().take(60).collect()
    }
}
