//! A command line for a service's own binary: print the schema, generate,
//! check and apply migrations, draw the diagrams, audit and repair the
//! records against their events.
//!
//! Register the machines in a few lines, and `cargo run -- --help` does the rest:
//!
//! ```no_run
//! # use statefold::Machine;
//! # #[derive(Machine)]
//! # #[machine(table = "orders")]
//! # enum Order { #[initial] Placed }
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     statefold::cli::Cli::new("orders").machine::<Order>().run().await
//! }
//! ```
//!
//! ```text
//! orders schema --dialect postgres
//! orders migrations generate --dialect postgres --dir migrations
//! orders migrations check --dir migrations
//! orders migrations apply --database-url postgres://localhost/app --dir migrations
//! orders diagram --format mermaid
//! orders verify --database-url postgres://localhost/app           # the tables match the code
//! orders audit --database-url postgres://localhost/app
//! orders repair --database-url postgres://localhost/app            # a dry run
//! orders repair --database-url postgres://localhost/app --apply --actor ops
//! ```

use crate::migrate::{bullets, first_file_name, Generate, Generated, MigrationError, Migrations};
use crate::schema::MachineDef;
use crate::{AuditReport, Error, Machine, RepairOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use steward::{checked_url, progress, Steward};

mod steward;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The registered machines and the commands over them.
#[derive(Debug, Clone)]
pub struct Cli {
    name: &'static str,
    machines: Vec<&'static MachineDef>,
    /// Per machine, in the same order: its audit and repair on a database.
    stores: Vec<Steward>,
}

/// What a command could not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The arguments do not parse (the message is clap's usage text).
    #[error("{0}")]
    Usage(#[from] clap::Error),
    /// A migration step failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// The next migration would lose data, and `--allow-destructive` was not given.
    #[error(
        "the next migration would lose data:\n{}\nrun again with --allow-destructive if that is intended",
        bullets(losses)
    )]
    Destructive {
        /// One line per loss.
        losses: Vec<String>,
    },
    /// `migrations check` failed: one error for each dialect directory that
    /// is behind the code (or unreadable), every one of them, not just the first.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Check(Vec<MigrationError>),
    /// A dialect this binary was built without.
    #[error("this binary was built without statefold's `{0}` feature: enable it in Cargo.toml to use that dialect")]
    MissingFeature(&'static str),
    /// No dialect directory exists to check.
    #[error("{0} holds no migrations yet: run `migrations generate --dialect <DIALECT>` first")]
    NoMigrations(PathBuf),
    /// The database URL names no known backend. Only its scheme is kept:
    /// the rest of a URL may hold a password.
    #[error(
        "cannot tell the dialect of {}: use a URL starting with {URL_SCHEMES}",
        scheme.as_ref().map_or_else(|| "the database URL".to_owned(), |s| format!("a `{s}` URL"))
    )]
    UnknownUrl {
        /// The URL's scheme with its `://` (`redis://`); `None` when it has none that can be shown safely.
        scheme: Option<String>,
    },
    /// The store failed (connecting, auditing or repairing).
    #[error(transparent)]
    Store(#[from] Error),
    /// The audit found rows that differ from their events (the report says which).
    #[error("{0}\nrun `repair` to see what it would change, then `repair --apply`")]
    Unclean(AuditReport),
    /// `--machine` names no registered machine.
    #[error("no machine is named `{name}`; registered: {registered}")]
    UnknownMachine {
        /// The name asked for.
        name: String,
        /// The registered machines.
        registered: String,
    },
    /// Output could not be written.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The schemes [`DialectArg::of_url`] knows, as the error lists them.
const URL_SCHEMES: &str = "sqlite:, postgres:// (or postgresql://) or mysql:// (or mariadb://)";

/// The static part of the command line; [`Cli::command`] adds what depends on
/// the app's name and machines.
#[derive(Parser)]
#[command(about = "Schema, migrations, diagrams, audit and repair for this service's statefold machines")]
struct Command {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Print the DDL creating every machine's tables.
    Schema {
        /// The SQL dialect.
        #[arg(long, value_enum)]
        dialect: DialectArg,
    },
    /// Generate, check and apply migrations.
    #[command(subcommand)]
    Migrations(MigrationsCommand),
    /// Compare a database's tables with the declarations: fail naming what is missing (run it at deploy time).
    Verify {
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Fold every record's events and compare them with its row; fail when any differs.
    Audit {
        #[command(flatten)]
        database: DatabaseArg,
        /// Only this machine (by its enum's name).
        #[arg(long)]
        machine: Option<String>,
    },
    /// Rewrite the rows that differ from their events (a dry run unless --apply), recording each repair.
    Repair {
        #[command(flatten)]
        database: DatabaseArg,
        /// Only this machine (by its enum's name).
        #[arg(long)]
        machine: Option<String>,
        /// Rewrite the rows (otherwise only show what would change).
        #[arg(long)]
        apply: bool,
        /// Who repairs, recorded with each repair.
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
    },
    /// Print (or write) the state diagram of each machine.
    Diagram {
        /// The diagram language.
        #[arg(long, value_enum, default_value_t = Format::Mermaid)]
        format: Format,
        /// Only this machine (by its enum's name).
        #[arg(long)]
        machine: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MigrationsCommand {
    /// Write the next migration if the declarations changed since the last one.
    Generate {
        /// The SQL dialect.
        #[arg(long, value_enum)]
        dialect: DialectArg,
        #[command(flatten)]
        dir: DirArg,
        /// The description in the file name (default: derived from the changes).
        #[arg(long)]
        name: Option<String>,
        /// Also write changes that lose data: dropped columns or machines, changed types, removed states.
        #[arg(long)]
        allow_destructive: bool,
    },
    /// Fail when the declarations changed since the last migration (for CI).
    Check {
        /// Check only this dialect (default: every dialect directory present).
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Apply pending migrations to a database, under a lock, checking applied files are unchanged.
    Apply {
        /// The database URL (`Cli::command` gives it examples named after the app).
        // The environment's value stays out of the help: it usually holds a password.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[command(flatten)]
        dir: DirArg,
    },
}

#[derive(Args)]
struct DatabaseArg {
    /// The database URL.
    // The environment's value stays out of the help: it usually holds a password.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

#[derive(Args)]
struct DirArg {
    /// The migrations root; each dialect has a directory under it.
    #[arg(long = "dir", default_value = "migrations")]
    path: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum DialectArg {
    Sqlite,
    Postgres,
    Mysql,
}

impl DialectArg {
    const ALL: [Self; 3] = [Self::Sqlite, Self::Postgres, Self::Mysql];

    fn dir(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }

    /// The dialect of a URL, whatever the case of its scheme (URL schemes are
    /// case-insensitive).
    fn of_url(url: &str) -> Option<Self> {
        let (scheme, _) = url.split_once(':')?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::Mysql),
            _ => None,
        }
    }
}

/// `url` with its scheme in lower case: sqlx's SQLite options strip only a
/// lower-case `sqlite:` and would take the rest for a file name.
fn lower_scheme(url: &str) -> String {
    match url.split_once(':') {
        Some((scheme, rest)) => format!("{}:{rest}", scheme.to_ascii_lowercase()),
        None => url.to_owned(),
    }
}

/// The part of a URL an error may print: its scheme, when it is one
/// (`redis://`). Without `://`, what precedes the first `:` may be a user
/// name (`admin:secret@host`), so nothing is shown.
fn shown_scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| format!("{scheme}://"))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Mermaid,
    Dot,
}

/// Runs `$body` with `D` bound to the backend of `$dialect`, or fails for a
/// dialect whose cargo feature is off.
macro_rules! with_dialect {
    ($dialect:expr, $d:ident => $body:expr) => {
        match $dialect {
            #[cfg(feature = "sqlite")]
            DialectArg::Sqlite => {
                type $d = crate::Sqlite;
                $body
            }
            #[cfg(feature = "postgres")]
            DialectArg::Postgres => {
                type $d = crate::Postgres;
                $body
            }
            #[cfg(feature = "mysql")]
            DialectArg::Mysql => {
                type $d = crate::MySql;
                $body
            }
            #[allow(unreachable_patterns)]
            other => return Err(CliError::MissingFeature(other.dir())),
        }
    };
}

impl Cli {
    /// A command line named `name` (as shown in its help), with no machines yet.
    pub fn new(name: &'static str) -> Self {
        Self { name, machines: Vec::new(), stores: Vec::new() }
    }

    /// Registers a machine.
    #[must_use]
    pub fn machine<M: Machine>(mut self) -> Self {
        self.machines.push(M::DEF);
        self.stores.push(Steward::of::<M>());
        self
    }

    /// Parses the process's arguments, runs the command, prints its result,
    /// and returns the exit code (0 success, 1 failure, 2 bad usage).
    pub async fn run(self) -> ExitCode {
        // Collected first: `ArgsOs` is not `Send`, and this future must be.
        let args: Vec<OsString> = std::env::args_os().collect();
        self.run_from(args).await
    }

    /// [`Cli::run`] with the given arguments (the first is the program name).
    pub async fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        // Not locked: a `StdoutLock` held across the await would make this
        // future `!Send`, unusable in `tokio::spawn`.
        let mut stdout = std::io::stdout();
        match self.execute(args, &mut stdout).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(CliError::Usage(e)) => {
                let _ = e.print();
                ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs the command given by `args`, writing its output to `out`.
    ///
    /// # Errors
    /// Bad usage, a failed migration step, or output that cannot be written.
    pub async fn execute<I, T>(self, args: I, out: &mut impl Write) -> Result<(), CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = self.command().try_get_matches_from(args)?;
        let command = <Command as clap::FromArgMatches>::from_arg_matches(&matches)?;
        let io = |source| CliError::Io { path: PathBuf::from("<stdout>"), source };
        match command.command {
            Top::Schema { dialect } => {
                let script = with_dialect!(dialect, D => Migrations::<D>::schema(&self.machines));
                out.write_all(script.as_bytes()).map_err(io)?;
            }
            Top::Migrations(command) => self.migrations(command, out).await?,
            Top::Verify { database } => {
                for (def, steward) in self.selected(None)? {
                    (steward.verify)(checked_url(&database.database_url)?).await?;
                    writeln!(out, "{}: the tables match the declaration", def.name).map_err(io)?;
                }
            }
            Top::Audit { database, machine } => {
                let mut unclean = None;
                for (_, steward) in self.selected(machine.as_deref())? {
                    let report = (steward.audit)(checked_url(&database.database_url)?).await?;
                    writeln!(out, "{report}").map_err(io)?;
                    if !report.is_clean() {
                        unclean = Some(report);
                    }
                }
                if let Some(report) = unclean {
                    return Err(CliError::Unclean(report));
                }
            }
            Top::Repair { database, machine, apply, actor } => {
                for (def, steward) in self.selected(machine.as_deref())? {
                    let options = if apply { RepairOptions::apply(actor.clone()) } else { RepairOptions::default() };
                    let report =
                        (steward.repair)(checked_url(&database.database_url)?, options, progress(def.name)).await?;
                    writeln!(out, "{}: {report}", def.name).map_err(io)?;
                }
            }
            Top::Diagram { format, machine, out: file } => {
                let text = self.diagram(format, machine.as_deref())?;
                match file {
                    Some(path) => std::fs::write(&path, text).map_err(|source| CliError::Io { path, source })?,
                    None => out.write_all(text.as_bytes()).map_err(io)?,
                }
            }
        }
        Ok(())
    }

    /// The clap command, its help speaking of this app and its machines.
    fn command(&self) -> clap::Command {
        let name = self.name;
        let first = first_file_name(&self.machines);
        let long_about = format!(
            "{name}: schema, migrations, diagrams, audit and repair for this service's statefold machines.\n\n\
            Migrations are generated from the machines' declarations: never write their DDL by hand. \
            Each dialect has its own directory of sqlx-compatible files (`<DIR>/postgres/{first}`) \
            and a snapshot of the schema they reach, so a changed declaration produces only the next step."
        );
        let examples = format!(
            "Examples:\n  \
            {name} schema --dialect postgres\n  \
            {name} migrations generate --dialect postgres --dir migrations\n  \
            {name} migrations check --dir migrations\n  \
            {name} migrations apply --dir migrations --database-url postgres://user@localhost/{name}\n  \
            {name} diagram --format mermaid"
        );
        let database_url = format!(
            "The database, e.g. postgres://user@localhost/{name}, mysql://root@localhost/{name}, sqlite:{name}.db"
        );
        <Command as clap::CommandFactory>::command()
            .name(name)
            .long_about(long_about)
            .after_long_help(examples)
            .mut_subcommand("migrations", |migrations| {
                migrations.mut_subcommand("apply", |apply| apply.mut_arg("database_url", |arg| arg.help(database_url)))
            })
    }

    async fn migrations(&self, command: MigrationsCommand, out: &mut impl Write) -> Result<(), CliError> {
        let io = |source| CliError::Io { path: PathBuf::from("<stdout>"), source };
        match command {
            MigrationsCommand::Generate { dialect, dir, name, allow_destructive } => {
                let options = Generate { allow_destructive, name };
                let (dir, generated) = with_dialect!(dialect, D => {
                    let migrations = Migrations::<D>::new(&dir.path);
                    let generated = match migrations.generate(&self.machines, &options) {
                        Err(MigrationError::Destructive { losses }) => return Err(CliError::Destructive { losses }),
                        generated => generated?,
                    };
                    (migrations.dir().to_owned(), generated)
                });
                match generated {
                    Generated::UpToDate => {
                        writeln!(out, "no changes: {} is up to date with the code", dir.display()).map_err(io)?;
                    }
                    Generated::Recorded { changes } => {
                        let snapshot = dir.join(crate::migrate::SNAPSHOT_FILE);
                        writeln!(out, "updated {} (no SQL needed)", snapshot.display()).map_err(io)?;
                        for change in changes {
                            writeln!(out, "  * {change}").map_err(io)?;
                        }
                    }
                    Generated::Written { path, changes } => {
                        writeln!(out, "wrote {}", path.display()).map_err(io)?;
                        for change in changes {
                            writeln!(out, "  * {change}").map_err(io)?;
                        }
                    }
                }
            }
            MigrationsCommand::Check { dialect, dir } => {
                let dialects: Vec<DialectArg> = match dialect {
                    Some(d) => vec![d],
                    None => DialectArg::ALL.into_iter().filter(|d| dir.path.join(d.dir()).is_dir()).collect(),
                };
                if dialects.is_empty() {
                    return Err(CliError::NoMigrations(dir.path));
                }
                let mut failed = Vec::new();
                for dialect in dialects {
                    let checked = with_dialect!(dialect, D => {
                        let migrations = Migrations::<D>::new(&dir.path);
                        migrations.check(&self.machines).map(|()| migrations.dir().to_owned())
                    });
                    match checked {
                        Ok(checked) => writeln!(out, "{}: up to date with the code", checked.display()).map_err(io)?,
                        Err(e) => failed.push(e),
                    }
                }
                if !failed.is_empty() {
                    return Err(CliError::Check(failed));
                }
            }
            MigrationsCommand::Apply { database_url, dir } => {
                let dialect = DialectArg::of_url(&database_url)
                    .ok_or_else(|| CliError::UnknownUrl { scheme: shown_scheme(&database_url) })?;
                let url = lower_scheme(&database_url);
                let applied = with_dialect!(dialect, D => Migrations::<D>::new(&dir.path).apply(&url).await?);
                if applied.versions.is_empty() {
                    writeln!(out, "nothing to apply: the database is up to date").map_err(io)?;
                } else {
                    let versions: Vec<String> = applied.versions.iter().map(|v| format!("{v:04}")).collect();
                    writeln!(out, "applied {}", versions.join(", ")).map_err(io)?;
                }
            }
        }
        Ok(())
    }

    /// The registered machines, or the one named `machine`.
    fn selected(&self, machine: Option<&str>) -> Result<Vec<(&'static MachineDef, Steward)>, CliError> {
        let all = self.machines.iter().copied().zip(self.stores.iter().copied());
        let Some(name) = machine else { return Ok(all.collect()) };
        let found: Vec<_> = all.filter(|(m, _)| m.name == name).collect();
        if found.is_empty() {
            let registered = self.machines.iter().map(|m| m.name).collect::<Vec<_>>().join(", ");
            return Err(CliError::UnknownMachine { name: name.to_owned(), registered });
        }
        Ok(found)
    }

    fn diagram(&self, format: Format, machine: Option<&str>) -> Result<String, CliError> {
        Ok(self
            .selected(machine)?
            .iter()
            .map(|(m, _)| match format {
                Format::Mermaid => format!("%% {}\n{}", m.name, m.mermaid),
                Format::Dot => m.dot.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::{lower_scheme, shown_scheme, DialectArg};

    #[test]
    fn schemes_are_recognised_in_any_case() {
        let dialect = |url| DialectArg::of_url(url).map(DialectArg::dir);
        assert_eq!(dialect("sqlite:app.db"), Some("sqlite"));
        assert_eq!(dialect("SQLite::memory:"), Some("sqlite"));
        assert_eq!(dialect("POSTGRES://db/app"), Some("postgres"));
        assert_eq!(dialect("PostgreSQL://db/app"), Some("postgres"));
        assert_eq!(dialect("MySQL://db/app"), Some("mysql"));
        assert_eq!(dialect("MARIADB://db/app"), Some("mysql"));
        assert_eq!(dialect("redis://db"), None);
        assert_eq!(dialect("app.db"), None);
        assert_eq!(lower_scheme("SQLite:Data/App.db"), "sqlite:Data/App.db");
    }

    #[test]
    fn only_a_scheme_is_ever_shown() {
        assert_eq!(shown_scheme("redis://admin:secret@host/0").as_deref(), Some("redis://"));
        assert_eq!(shown_scheme("admin:secret@host/app"), None);
        assert_eq!(shown_scheme("admin:secret@host/app?next=http://x"), None);
    }
}
