//! `statefold::cli` as a service's binary runs it: commands, output, exit paths.

use statefold::cli::{Cli, CliError};
use statefold::migrate::MigrationError;
use statefold::Machine;
use statefold_tests::machines::{Order, Ticket};

fn cli() -> Cli {
    Cli::new("shop").machine::<Order>().machine::<Ticket>()
}

async fn run(args: &[&str]) -> Result<String, CliError> {
    let mut out = Vec::new();
    cli().execute(std::iter::once("shop").chain(args.iter().copied()), &mut out).await?;
    Ok(String::from_utf8(out).expect("output is UTF-8"))
}

fn temp_root(test: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("sf_cli_{test}_{}_{nanos}", std::process::id()))
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
    let CliError::Migration(MigrationError::Drift { changes, .. }) = &drift else { panic!("expected drift: {drift}") };
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

    let url = run(&["migrations", "apply", "--database-url", "redis://localhost"]).await.unwrap_err();
    assert_eq!(
        url.to_string(),
        "cannot tell the dialect of `redis://localhost`: use a sqlite:, postgres:// or mysql:// URL"
    );
}
