//! `statefold::cli` as a service's binary runs it: commands, output, exit paths.

use statefold::cli::{Cli, CliError};
use statefold::migrate::{Dialect, MigrationError};
use statefold::{Machine, MySql, Postgres, Sqlite};
use statefold_tests::db::TestBackend;
use statefold_tests::machines::{Account, Order, Ticket};

fn cli() -> Cli {
    Cli::new("shop").machine::<Order>().machine::<Ticket>()
}

async fn run(args: &[&str]) -> Result<String, CliError> {
    let mut out = Vec::new();
    cli().execute(std::iter::once("shop").chain(args.iter().copied()), &mut out).await?;
    Ok(String::from_utf8(out).expect("output is UTF-8"))
}

/// `execute` for a binary named `name` over `cli`.
async fn run_as(name: &str, cli: Cli, args: &[&str]) -> Result<String, CliError> {
    let mut out = Vec::new();
    cli.execute(std::iter::once(name).chain(args.iter().copied()), &mut out).await?;
    Ok(String::from_utf8(out).expect("output is UTF-8"))
}

fn temp_root(test: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("sf_cli_{test}_{}_{nanos}", std::process::id()))
}

/// A directory removed when the test ends, passed or not.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        Self(temp_root(test))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temporary paths are UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_send<T: Send>(_: &T) {}

/// A service may run its command line inside `tokio::spawn`: the futures must be `Send`.
#[test]
fn the_command_line_futures_are_send() {
    let run = cli().run();
    assert_send(&run);
    let run_from = cli().run_from(["shop", "diagram"]);
    assert_send(&run_from);
}

#[tokio::test]
async fn schema_prints_every_machine_in_the_dialect() {
    let postgres = run(&["schema", "--dialect", "postgres"]).await.unwrap();
    assert!(postgres.contains(&format!(r#"CREATE TABLE IF NOT EXISTS "{}""#, Order::DEF.table)), "{postgres}");
    assert!(postgres.contains(&format!(r#"CREATE TABLE IF NOT EXISTS "{}""#, Ticket::DEF.events_table)));
    assert!(postgres.contains("JSONB"));
    let mysql = run(&["schema", "--dialect", "mysql"]).await.unwrap();
    assert!(mysql.contains(&format!("CREATE TABLE IF NOT EXISTS `{}`", Order::DEF.table)), "{mysql}");
}

#[tokio::test]
async fn diagrams_come_in_both_formats_and_per_machine() {
    let mermaid = run(&["diagram"]).await.unwrap();
    assert!(mermaid.contains(Order::DEF.mermaid) && mermaid.contains(Ticket::DEF.mermaid), "{mermaid}");
    let dot = run(&["diagram", "--format", "dot", "--machine", "Order"]).await.unwrap();
    assert_eq!(dot, Order::DEF.dot);

    let root = temp_root("diagram");
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("order.mmd");
    let printed = run(&["diagram", "--machine", "Order", "--out", file.to_str().unwrap()]).await.unwrap();
    assert!(printed.is_empty(), "written to the file, not printed");
    assert!(std::fs::read_to_string(&file).unwrap().contains(Order::DEF.mermaid));
    std::fs::remove_dir_all(&root).unwrap();

    let unknown = run(&["diagram", "--machine", "Invoice"]).await.unwrap_err();
    assert_eq!(unknown.to_string(), "no machine is named `Invoice`; registered: Order, Ticket");
}

#[tokio::test]
async fn generate_then_check_then_nothing_to_do() {
    let root = temp_root("generate");
    let dir = root.to_str().unwrap();

    let missing = run(&["migrations", "check", "--dir", dir]).await.unwrap_err();
    assert!(matches!(missing, CliError::NoMigrations(_)), "{missing}");

    let wrote = run(&["migrations", "generate", "--dialect", "sqlite", "--dir", dir]).await.unwrap();
    assert!(wrote.starts_with("wrote ") && wrote.contains("0001_create_"), "{wrote}");
    assert!(wrote.contains("* create machine `Order`") && wrote.contains("* create machine `Ticket`"), "{wrote}");
    let again = run(&["migrations", "generate", "--dialect", "sqlite", "--dir", dir]).await.unwrap();
    assert!(again.starts_with("no changes:"), "{again}");
    let checked = run(&["migrations", "check", "--dir", dir]).await.unwrap();
    assert!(checked.contains("sqlite: up to date"), "{checked}");

    // A binary that dropped a machine drifts from its migrations.
    let mut out = Vec::new();
    let drift = Cli::new("shop")
        .machine::<Order>()
        .execute(["shop", "migrations", "check", "--dir", dir], &mut out)
        .await
        .unwrap_err();
    let CliError::Check(failed) = &drift else { panic!("expected a failed check: {drift}") };
    let [MigrationError::Drift { changes, .. }] = failed.as_slice() else { panic!("expected one drift: {drift}") };
    assert!(changes.iter().any(|c| c.contains("drop machine `Ticket`")), "{changes:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn bad_usage_is_a_usage_error_with_help() {
    let missing_dialect = run(&["schema"]).await.unwrap_err();
    let CliError::Usage(usage) = &missing_dialect else { panic!("expected a usage error: {missing_dialect}") };
    assert!(usage.to_string().contains("--dialect <DIALECT>"), "{usage}");

    let help = run(&["--help"]).await.unwrap_err();
    assert!(help.to_string().contains("Generate, check and apply migrations"), "{help}");
}

#[tokio::test]
async fn an_unknown_url_is_refused_without_printing_its_credentials() {
    let url = run(&["migrations", "apply", "--database-url", "redis://admin:s3cret@cache.internal:6379/0"])
        .await
        .unwrap_err();
    let text = url.to_string();
    assert!(!text.contains("s3cret") && !text.contains("admin") && !text.contains("cache.internal"), "{text}");
    assert!(text.contains("`redis://`") && text.contains("postgres://") && text.contains("mysql://"), "{text}");

    // Without a scheme, what precedes the first `:` is the user name: not printed either.
    let bare = run(&["migrations", "apply", "--database-url", "admin:s3cret@db.internal/app"]).await.unwrap_err();
    let text = bare.to_string();
    assert!(!text.contains("s3cret") && !text.contains("admin") && !text.contains("db.internal"), "{text}");
    assert!(text.contains("sqlite:"), "{text}");
}

#[tokio::test]
async fn help_never_shows_the_database_url_from_the_environment() {
    // Only this test sets the variable; the others pass `--database-url` or do not apply.
    std::env::set_var("DATABASE_URL", "postgres://admin:s3cret@db.internal/app");
    let help = run(&["migrations", "apply", "--help"]).await.unwrap_err().to_string();
    std::env::remove_var("DATABASE_URL");
    assert!(help.contains("DATABASE_URL") && !help.contains("s3cret"), "{help}");
}

/// Generates the migrations of `Order` for `B` and applies them through a URL
/// whose scheme is written in capitals and mixed case.
async fn apply_with_a_scheme_in_any_case<B: TestBackend + Dialect>(scheme: &str)
where
    <B::Db as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    let Some(db) = B::create("cli_scheme").await else { return };
    let root = TempDir::new(B::DIR);
    let shop = || Cli::new("shop").machine::<Order>();
    run_as("shop", shop(), &["migrations", "generate", "--dialect", B::DIR, "--dir", root.path()]).await.unwrap();
    let (_, rest) = db.url.split_once(':').expect("a test URL has a scheme");
    let url = format!("{scheme}:{rest}");
    let applied = run_as("shop", shop(), &["migrations", "apply", "--dir", root.path(), "--database-url", &url])
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(applied, "applied 0001\n");
    // The same database, reached through its lower-case URL, has nothing left to apply.
    let again = run_as("shop", shop(), &["migrations", "apply", "--dir", root.path(), "--database-url", &db.url])
        .await
        .unwrap();
    assert_eq!(again, "nothing to apply: the database is up to date\n");
}

#[tokio::test]
async fn url_schemes_are_recognised_in_any_case_sqlite() {
    apply_with_a_scheme_in_any_case::<Sqlite>("SQLite").await;
}

#[tokio::test]
async fn url_schemes_are_recognised_in_any_case_postgres() {
    apply_with_a_scheme_in_any_case::<Postgres>("POSTGRES").await;
}

#[tokio::test]
async fn url_schemes_are_recognised_in_any_case_mysql() {
    apply_with_a_scheme_in_any_case::<MySql>("MySQL").await;
}

#[tokio::test]
async fn help_speaks_of_this_app_and_its_machines() {
    let library = || Cli::new("library").machine::<Account>();
    let help = run_as("library", library(), &["--help"]).await.unwrap_err().to_string();
    assert!(!help.contains("orders"), "{help}");
    assert!(help.contains("postgres/0001_create_accounts.sql"), "{help}");
    assert!(help.contains("library migrations apply"), "{help}");
    let apply = run_as("library", library(), &["migrations", "apply", "--help"]).await.unwrap_err().to_string();
    assert!(!apply.contains("/app") && !apply.contains("orders"), "{apply}");
    assert!(apply.contains("postgres://user@localhost/library") && apply.contains("sqlite:library.db"), "{apply}");
}

#[tokio::test]
async fn a_destructive_change_names_the_flag_that_allows_it() {
    let root = TempDir::new("destructive");
    let generate = ["migrations", "generate", "--dialect", "sqlite", "--dir", root.path()];
    run(&generate).await.unwrap();
    let fewer = || Cli::new("shop").machine::<Order>();
    let refused = run_as("shop", fewer(), &generate).await.unwrap_err().to_string();
    assert!(refused.contains("machine `Ticket` is no longer declared"), "{refused}");
    assert!(refused.contains("--allow-destructive") && !refused.contains("Generate::"), "{refused}");
    let allowed = run_as("shop", fewer(), &[&generate[..], &["--allow-destructive"]].concat()).await.unwrap();
    assert!(allowed.starts_with("wrote ") && allowed.contains("0002_"), "{allowed}");
}

#[tokio::test]
async fn check_names_every_directory_that_is_behind() {
    let root = TempDir::new("behind");
    for dialect in ["sqlite", "postgres", "mysql"] {
        run(&["migrations", "generate", "--dialect", dialect, "--dir", root.path()]).await.unwrap();
    }
    // A binary that dropped a machine; only its MySQL directory is regenerated.
    let fewer = || Cli::new("shop").machine::<Order>();
    run_as(
        "shop",
        fewer(),
        &["migrations", "generate", "--dialect", "mysql", "--dir", root.path(), "--allow-destructive"],
    )
    .await
    .unwrap();
    let behind = run_as("shop", fewer(), &["migrations", "check", "--dir", root.path()]).await.unwrap_err().to_string();
    let named = |dialect: &str| behind.contains(&root.0.join(dialect).display().to_string());
    assert!(named("sqlite") && named("postgres") && !named("mysql"), "{behind}");
    assert!(behind.contains("drop machine `Ticket`"), "{behind}");
}

/// The README's commands are run as written: `migrations apply` must not
/// target the database the tests create theirs beside.
#[test]
fn the_readme_applies_migrations_to_a_database_of_its_own() {
    let readme = include_str!("../../README.md");
    let applies: Vec<&str> = readme.lines().filter(|l| l.contains("migrations apply")).collect();
    assert!(!applies.is_empty(), "the README shows `migrations apply`");
    for line in applies {
        assert!(!line.contains("/test"), "{line}");
    }
}

/// Given a row tampered with by SQL, `audit` fails naming it, `repair`
/// shows what it would change and changes nothing, `repair --apply`
/// rewrites it, and `audit` then passes.
async fn audit_and_repair_through_the_cli<B: TestBackend>() {
    let Some(db) = B::create("cli_repair").await else { return };
    let store = db.store::<Order>().await;
    store.create_support_tables().await.unwrap();
    let order = store
        .insert(statefold_tests::machines::OrderPlaced { customer: "ada".into(), amount_cents: 4200 })
        .await
        .unwrap();
    let tamper = format!("UPDATE orders SET amount_cents = 1 WHERE id = {}", order.id());
    db.execute(&tamper, vec![]).await;
    let shop = || Cli::new("shop").machine::<Order>();
    let url = db.url.clone();

    let verified = run_as("shop", shop(), &["verify", "--database-url", &url]).await.unwrap();
    assert!(verified.contains("Order: the tables match the declaration"), "{verified}");
    let behind = run_as("shop", cli(), &["verify", "--database-url", &url]).await.unwrap_err();
    assert!(behind.to_string().contains("table `tickets` does not exist"), "{behind}");
    let unclean = run_as("shop", shop(), &["audit", "--database-url", &url]).await.unwrap_err();
    assert!(matches!(unclean, CliError::Unclean(_)), "{unclean}");
    assert!(unclean.to_string().contains("column `amount_cents` is 1 in the row but 4200 by its events"), "{unclean}");
    let dry = run_as("shop", shop(), &["repair", "--database-url", &url]).await.unwrap();
    assert!(dry.contains("would repair 1 record(s)") && dry.contains("amount_cents 1 -> 4200"), "{dry}");
    assert!(run_as("shop", shop(), &["audit", "--database-url", &url]).await.is_err(), "a dry run changes nothing");
    let applied =
        run_as("shop", shop(), &["repair", "--database-url", &url, "--apply", "--actor", "ops"]).await.unwrap();
    assert!(applied.contains("repaired 1 record(s)"), "{applied}");
    let clean = run_as("shop", shop(), &["audit", "--database-url", &url]).await.unwrap();
    assert!(clean.contains("no mismatch"), "{clean}");
}

#[tokio::test]
async fn audit_and_repair_through_the_cli_sqlite() {
    audit_and_repair_through_the_cli::<Sqlite>().await;
}

#[tokio::test]
#[cfg_attr(statefold_no_postgres_url, ignore = "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)")]
async fn audit_and_repair_through_the_cli_postgres() {
    audit_and_repair_through_the_cli::<Postgres>().await;
}

#[tokio::test]
#[cfg_attr(statefold_no_mysql_url, ignore = "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)")]
async fn audit_and_repair_through_the_cli_mysql() {
    audit_and_repair_through_the_cli::<MySql>().await;
}
