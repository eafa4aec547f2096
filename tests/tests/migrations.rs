//! Generated migrations on every backend: a schema the store works against,
//! an evolution v1 -> v2 -> v3 applied in order with old rows still usable,
//! drift caught by `check`, `apply` idempotent, edited files refused.

use statefold::migrate::{Dialect, Generate, Generated, MigrationError, Migrations};
use statefold::{Machine, Metadata, MySql, Postgres, Sqlite, Store};
use statefold_tests::db::TestBackend;
use std::path::{Path, PathBuf};

/// The first release: orders are placed, paid and shipped.
mod v1 {
    #[derive(statefold::Machine, Clone, Debug, PartialEq)]
    #[machine(table = "orders")]
    pub(crate) enum Order {
        #[initial]
        Placed { customer: String, amount_cents: i64 },
        #[from(Placed)]
        Paid { payment_ref: String },
        #[from(Paid)]
        Shipped { tracking: String },
    }
}

/// The second: paid orders may be refunded (a new state and column), and
/// orders are looked up by customer (a new index).
mod v2 {
    #[derive(statefold::Machine, Clone, Debug, PartialEq)]
    #[machine(table = "orders")]
    pub(crate) enum Order {
        #[initial]
        Placed {
            #[column(index)]
            customer: String,
            amount_cents: i64,
        },
        #[from(Placed)]
        Paid { payment_ref: String },
        #[from(Paid)]
        Shipped { tracking: String },
        #[from(Paid)]
        Refunded { refund_ref: String },
    }
}

/// The third: `Paid` is renamed `Settled` in code and in the database; rows
/// written as `paid` keep their state.
mod v3 {
    #[derive(statefold::Machine, Clone, Debug, PartialEq)]
    #[machine(table = "orders")]
    pub(crate) enum Order {
        #[initial]
        Placed {
            #[column(index)]
            customer: String,
            amount_cents: i64,
        },
        #[from(Placed)]
        #[state(name = "settled", was = "paid")]
        Settled { payment_ref: String },
        #[from(Settled)]
        Shipped { tracking: String },
        #[from(Settled)]
        Refunded { refund_ref: String },
    }
}

/// A fourth that drops the refund column: data would be lost.
mod v4 {
    #[derive(statefold::Machine, Clone, Debug, PartialEq)]
    #[machine(table = "orders")]
    pub(crate) enum Order {
        #[initial]
        Placed {
            #[column(index)]
            customer: String,
            amount_cents: i64,
        },
        #[from(Placed)]
        #[state(name = "settled", was = "paid")]
        Settled { payment_ref: String },
        #[from(Settled)]
        Shipped { tracking: String },
        #[from(Settled)]
        Refunded,
    }
}

/// A migrations root of its own, removed afterwards.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self(std::env::temp_dir().join(format!("sf_migrations_{test}_{}_{nanos}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn written(generated: Generated) -> PathBuf {
    match generated {
        Generated::Written { path, .. } => path,
        other => panic!("a migration was expected, got {other:?}"),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

async fn evolution<B: TestBackend + Dialect>()
where
    <B::Db as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    let Some(db) = B::create("evolution").await else { return };
    let root = TempDir::new(B::DIR);
    let migrations = Migrations::<B>::new(&root.0);
    let options = Generate::default();

    // v1: one file creates the tables; generating again writes nothing.
    let first = written(migrations.generate(&[v1::Order::DEF], &options).unwrap());
    assert_eq!(file_name(&first), "0001_create_orders.sql");
    let text = std::fs::read_to_string(&first).unwrap();
    assert!(
        text.contains("statefold_cursors") && text.contains("statefold_leases"),
        "the consumers' shared tables come first"
    );
    assert_eq!(migrations.generate(&[v1::Order::DEF], &options).unwrap(), Generated::UpToDate);
    migrations.check(&[v1::Order::DEF]).unwrap();
    assert_eq!(migrations.apply(&db.url).await.unwrap().versions, [1]);
    assert!(migrations.apply(&db.url).await.unwrap().versions.is_empty(), "applying twice is a no-op");

    // Rows written under v1: one paid, one placed.
    let store = Store::<v1::Order, B>::new(db.pool.clone());
    let paid = store.insert(v1::OrderPlaced { customer: "ada".into(), amount_cents: 1200 }).await.unwrap();
    let paid = store.apply(paid.transition(v1::OrderPaid { payment_ref: "pi_1".into() })).await.unwrap();
    let placed = store.insert(v1::OrderPlaced { customer: "bob".into(), amount_cents: 300 }).await.unwrap();
    let refunded = store.insert(v1::OrderPlaced { customer: "cy".into(), amount_cents: 50 }).await.unwrap();
    let refunded = store.apply(refunded.transition(v1::OrderPaid { payment_ref: "pi_2".into() })).await.unwrap();

    // v2: check catches the drift, then the next file adds state, column and index.
    let drift = migrations.check(&[v2::Order::DEF]).unwrap_err();
    let MigrationError::Drift { changes, .. } = &drift else { panic!("expected drift, got {drift}") };
    assert!(changes.iter().any(|c| c.contains("refunded")), "{changes:?}");
    assert!(changes.iter().any(|c| c.contains("refund_ref")), "{changes:?}");
    assert!(changes.iter().any(|c| c.contains("index column `customer`")), "{changes:?}");
    let second = written(migrations.generate(&[v2::Order::DEF], &options).unwrap());
    assert!(file_name(&second).starts_with("0002_"), "{}", second.display());
    assert_eq!(migrations.apply(&db.url).await.unwrap().versions, [2]);

    let store = Store::<v2::Order, B>::new(db.pool.clone());
    let v2::OrderState::Paid(refunding) = store.load(refunded.id()).await.unwrap() else {
        panic!("a row paid under v1 loads as paid under v2");
    };
    let done = store.apply(refunding.transition(v2::OrderRefunded { refund_ref: "re_1".into() })).await.unwrap();
    assert_eq!(done.row().refund_ref.as_deref(), Some("re_1"));

    // v3: the rename moves rows from `paid` to `settled`; they load and move on.
    let third = written(migrations.generate(&[v3::Order::DEF], &options).unwrap());
    assert!(file_name(&third).starts_with("0003_"), "{}", third.display());
    assert_eq!(migrations.apply(&db.url).await.unwrap().versions, [3]);
    let store = Store::<v3::Order, B>::new(db.pool.clone());
    let v3::OrderState::Settled(settled) = store.load(paid.id()).await.unwrap() else {
        panic!("a row paid under v1 loads as settled under v3");
    };
    assert_eq!(settled.row().payment_ref.as_deref(), Some("pi_1"));
    let shipped = store.apply(settled.transition(v3::OrderShipped { tracking: "1Z".into() })).await.unwrap();
    assert_eq!(shipped.version(), 3);
    let history = store.history(paid.id()).await.unwrap();
    assert!(matches!(history[1].event, v3::Order::Settled { .. }), "events stored as `paid` read back as Settled");
    let v3::OrderState::Placed(_) = store.load(placed.id()).await.unwrap() else { panic!("placed stays placed") };
    let moved = store.transition(placed.id(), v3::Order::Settled { payment_ref: "pi_3".into() }, Metadata::new());
    assert!(matches!(moved.await.unwrap(), v3::OrderState::Settled(_)));
    assert!(store.audit().await.unwrap().is_clean(), "every row equals the fold of its events");
    migrations.check(&[v3::Order::DEF]).unwrap();

    // v4 would drop a column: refused unless asked, and nothing is written.
    let refused = migrations.generate(&[v4::Order::DEF], &options).unwrap_err();
    let MigrationError::Destructive { losses } = &refused else { panic!("expected a refusal, got {refused}") };
    assert!(losses.iter().any(|l| l.contains("orders.refund_ref")), "{losses:?}");
    assert!(!migrations.dir().join("0004_orders_drop_refund_ref.sql").exists());
    let fourth = written(migrations.generate(&[v4::Order::DEF], &Generate::default().allow_destructive(true)).unwrap());
    assert_eq!(file_name(&fourth), "0004_orders_drop_refund_ref.sql");
    assert_eq!(migrations.apply(&db.url).await.unwrap().versions, [4]);
    assert!(Store::<v4::Order, B>::new(db.pool.clone()).audit().await.unwrap().is_clean());

    // An applied file that changed is refused.
    let mut text = std::fs::read_to_string(&first).unwrap();
    text.push_str("-- edited after it was applied\n");
    std::fs::write(&first, text).unwrap();
    let changed = migrations.apply(&db.url).await.unwrap_err();
    assert!(matches!(changed, MigrationError::ChangedAfterApply { version: 1 }), "{changed}");
}

#[tokio::test]
async fn evolution_on_sqlite() {
    evolution::<Sqlite>().await;
}

#[tokio::test]
#[cfg_attr(statefold_no_postgres_url, ignore = "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)")]
async fn evolution_on_postgres() {
    evolution::<Postgres>().await;
}

#[tokio::test]
#[cfg_attr(statefold_no_mysql_url, ignore = "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)")]
async fn evolution_on_mysql() {
    evolution::<MySql>().await;
}

/// Given tables of the first release and code of the second (deployed
/// before its migration), then the schema check names what is missing and
/// what to run, and a statement that fails for that reason says the same
/// rather than the database's raw error; the first release's code checks clean.
async fn code_ahead_of_its_migrations<B: TestBackend>() {
    let Some(db) = B::create("ahead").await else { return };
    let old = Store::<v1::Order, B>::new(db.pool.clone());
    old.create_tables().await.unwrap();
    old.check_schema().await.expect("the first release matches its tables");
    let placed = old.insert(v1::OrderPlaced { customer: "ada".into(), amount_cents: 1 }).await.unwrap();

    let new = Store::<v2::Order, B>::new(db.pool.clone());
    let error = new.check_schema().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(&error, statefold::Error::SchemaMismatch { machine: "Order", .. }), "{text}");
    assert!(text.contains("table `orders` has no column `refund_ref`"), "{text}");
    assert!(text.contains("migrations apply"), "{text}");
    let load = new.load(placed.id()).await.unwrap_err();
    assert!(
        matches!(&load, statefold::Error::SchemaMismatch { problems, .. } if problems[0].contains("refund_ref")),
        "{load}"
    );
}

#[tokio::test]
async fn code_ahead_of_its_migrations_on_sqlite() {
    code_ahead_of_its_migrations::<Sqlite>().await;
}

#[tokio::test]
#[cfg_attr(statefold_no_postgres_url, ignore = "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)")]
async fn code_ahead_of_its_migrations_on_postgres() {
    code_ahead_of_its_migrations::<Postgres>().await;
}

#[tokio::test]
#[cfg_attr(statefold_no_mysql_url, ignore = "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)")]
async fn code_ahead_of_its_migrations_on_mysql() {
    code_ahead_of_its_migrations::<MySql>().await;
}

/// Declares a version of the claims machine for the event-schema tests.
macro_rules! claims {
    ($($release:ident { $($states:tt)* })*) => {$(
        mod $release {
            #[derive(statefold::Machine, Clone, Debug, PartialEq)]
            #[machine(table = "claims")]
            pub(crate) enum Claim {
                #[initial]
                Filed { customer: String, amount: i64 },
                $($states)*
            }
        }
    )*};
}

claims! {
    // The release every test starts from.
    base {
        #[from(Filed)]
        Approved { by: String },
        #[from(Filed)]
        Escalated { by: String, note: Option<String>, #[serde(default)] priority: i32 },
        #[from(Filed)]
        Rejected { reason: String },
    }
    // `Approved` gains a field its stored events lack.
    required_field {
        #[from(Filed)]
        Approved { by: String, level: i32 },
        #[from(Filed)]
        Escalated { by: String, note: Option<String>, #[serde(default)] priority: i32 },
        #[from(Filed)]
        Rejected { reason: String },
    }
    // `Rejected` gains `by`, a column `Approved` already has: no SQL changes.
    field_of_an_existing_column {
        #[from(Filed)]
        Approved { by: String },
        #[from(Filed)]
        Escalated { by: String, note: Option<String>, #[serde(default)] priority: i32 },
        #[from(Filed)]
        Rejected { reason: String, by: String },
    }
    // The same, made safe with a default; and `note`, another existing column, as an `Option`.
    field_with_a_default {
        #[from(Filed)]
        Approved { by: String },
        #[from(Filed)]
        Escalated { by: String, note: Option<String>, #[serde(default)] priority: i32 },
        #[from(Filed)]
        Rejected { reason: String, #[serde(default)] by: String, note: Option<String> },
    }
    // `Escalated` no longer stores `by` (the column stays, `Approved` sets it).
    removed_field {
        #[from(Filed)]
        Approved { by: String },
        #[from(Filed)]
        Escalated { note: Option<String>, #[serde(default)] priority: i32 },
        #[from(Filed)]
        Rejected { reason: String },
    }
    // `Rejected`'s `reason` is now `cause`.
    renamed_field {
        #[from(Filed)]
        Approved { by: String },
        #[from(Filed)]
        Escalated { by: String, note: Option<String>, #[serde(default)] priority: i32 },
        #[from(Filed)]
        Rejected { cause: String },
    }
    // The same, reading the stored name.
    renamed_with_an_alias {
        #[from(Filed)]
        Approved { by: String },
        #[from(Filed)]
        Escalated { by: String, note: Option<String>, #[serde(default)] priority: i32 },
        #[from(Filed)]
        Rejected { #[serde(alias = "reason")] cause: String },
    }
    // `Escalated`'s `priority` changes type.
    retyped_field {
        #[from(Filed)]
        Approved { by: String },
        #[from(Filed)]
        Escalated { by: String, note: Option<String>, #[serde(default)] priority: String },
        #[from(Filed)]
        Rejected { reason: String },
    }
    // `Escalated`'s `note` is no longer optional.
    required_note {
        #[from(Filed)]
        Approved { by: String },
        #[from(Filed)]
        Escalated { by: String, note: String, #[serde(default)] priority: i32 },
        #[from(Filed)]
        Rejected { reason: String },
    }
    // `Escalated`'s `priority` loses its default.
    priority_without_default {
        #[from(Filed)]
        Approved { by: String },
        #[from(Filed)]
        Escalated { by: String, note: Option<String>, priority: i32 },
        #[from(Filed)]
        Rejected { reason: String },
    }
    // `Approved` events at version 2, upcast from version 1.
    approved_v2 {
        #[from(Filed)]
        #[event(version = 2, upcast(1 => super::add_level))]
        Approved { by: String, level: i32 },
        #[from(Filed)]
        Escalated { by: String, note: Option<String>, #[serde(default)] priority: i32 },
        #[from(Filed)]
        Rejected { reason: String },
    }
}

/// Version 1 -> 2 of `Approved`: level 1 for approvals stored before levels.
fn add_level(mut payload: serde_json::Value) -> Result<serde_json::Value, String> {
    payload.as_object_mut().ok_or("not an object")?.insert("level".into(), 1.into());
    Ok(payload)
}

/// A migrations directory that has reached `base`.
fn migrated_to_base(test: &str) -> (TempDir, Migrations<Sqlite>) {
    let root = TempDir::new(test);
    let migrations = Migrations::<Sqlite>::new(&root.0);
    written(migrations.generate(&[base::Claim::DEF], &Generate::default()).unwrap());
    (root, migrations)
}

/// The refusal of `check` and of `generate`, the same, with nothing written.
fn refused(migrations: &Migrations<Sqlite>, def: &'static statefold::MachineDef) -> Vec<String> {
    let before = std::fs::read_dir(migrations.dir()).unwrap().count();
    let snapshot = migrations.snapshot().unwrap();
    let checked = migrations.check(&[def]).unwrap_err();
    let generated = migrations.generate(&[def], &Generate::default().allow_destructive(true)).unwrap_err();
    assert_eq!(checked.to_string(), generated.to_string());
    assert_eq!(std::fs::read_dir(migrations.dir()).unwrap().count(), before, "nothing is written");
    assert_eq!(migrations.snapshot().unwrap(), snapshot, "the snapshot is unchanged");
    let MigrationError::Undecodable { refused } = checked else { panic!("expected a refusal, got {checked}") };
    refused.iter().map(ToString::to_string).collect()
}

#[test]
fn a_new_field_without_a_default_is_refused() {
    let (_root, migrations) = migrated_to_base("required");
    let refused = refused(&migrations, required_field::Claim::DEF);
    assert_eq!(refused.len(), 1, "{refused:?}");
    let text = &refused[0];
    assert!(text.starts_with("`Claim::Approved` event: new field `level: i32`"), "{text}");
    for fix in ["declare it `Option<i32>`", "`#[serde(default)]`", "upcaster"] {
        assert!(text.contains(fix), "{text} should suggest {fix}");
    }
}

/// The column exists already, so no SQL changes: the event's payload does.
#[test]
fn a_new_field_on_an_existing_column_is_refused() {
    let (_root, migrations) = migrated_to_base("existing_column");
    let plan = migrations.plan(&[field_of_an_existing_column::Claim::DEF]).unwrap();
    assert!(plan.changes.is_empty(), "no SQL changes: {:?}", plan.changes);
    let refused = refused(&migrations, field_of_an_existing_column::Claim::DEF);
    assert!(refused[0].starts_with("`Claim::Rejected` event: new field `by: String`"), "{refused:?}");
}

#[test]
fn a_new_field_with_a_default_or_optional_is_recorded_without_sql() {
    let (_root, migrations) = migrated_to_base("defaults");
    let def = field_with_a_default::Claim::DEF;
    let drift = migrations.check(&[def]).unwrap_err();
    assert!(matches!(&drift, MigrationError::Drift { .. }), "{drift}");
    let Generated::Recorded { changes } = migrations.generate(&[def], &Generate::default()).unwrap() else {
        panic!("only the snapshot changes");
    };
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes[0].contains("`Claim::Rejected` event: new field `by: String`"), "{changes:?}");
    assert!(changes[1].contains("new field `note: Option<String>`"), "{changes:?}");
    assert_eq!(std::fs::read_dir(migrations.dir()).unwrap().count(), 2, "one migration and the snapshot");
    migrations.check(&[def]).unwrap();
    assert_eq!(migrations.generate(&[def], &Generate::default()).unwrap(), Generated::UpToDate);
}

#[test]
fn a_removed_field_loses_what_stored_events_say() {
    let (_root, migrations) = migrated_to_base("removed");
    let def = removed_field::Claim::DEF;
    let refused = migrations.generate(&[def], &Generate::default()).unwrap_err();
    let MigrationError::Destructive { losses } = &refused else { panic!("expected a loss, got {refused}") };
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert!(losses[0].starts_with("`Claim::Escalated` event: field `by` is no longer declared"), "{losses:?}");
    assert!(losses[0].contains("keep the field"), "{losses:?}");
    let allowed = migrations.generate(&[def], &Generate::default().allow_destructive(true)).unwrap();
    assert!(matches!(allowed, Generated::Recorded { .. }), "{allowed:?}");
}

#[test]
fn a_renamed_field_is_refused_unless_the_stored_name_is_read() {
    let (_root, migrations) = migrated_to_base("renamed");
    let refused = refused(&migrations, renamed_field::Claim::DEF);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].starts_with("`Claim::Rejected` event: field `reason` renamed to `cause`"), "{refused:?}");
    assert!(refused[0].contains("`#[serde(alias = \"reason\")]` on `cause`"), "{refused:?}");
    let plan = migrations.plan(&[renamed_with_an_alias::Claim::DEF]).unwrap();
    assert!(plan.refused().is_empty(), "{:?}", plan.refused());
    assert!(plan.events[0].to_string().contains("is named `cause` in new events"), "{:?}", plan.events);
}

#[test]
fn a_changed_type_is_refused() {
    let (_root, migrations) = migrated_to_base("retyped");
    let refused = refused(&migrations, retyped_field::Claim::DEF);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("`Claim::Escalated` event: field `priority` changes type from i32 to String"),
        "{refused:?}"
    );
    assert!(refused[0].contains("keep the type"), "{refused:?}");
}

#[test]
fn an_option_made_required_is_refused() {
    let (_root, migrations) = migrated_to_base("required_note");
    let refused = refused(&migrations, required_note::Claim::DEF);
    assert!(refused[0].starts_with("`Claim::Escalated` event: field `note` is no longer an `Option`"), "{refused:?}");
    assert!(refused[0].contains("keep it `Option<String>`"), "{refused:?}");
}

#[test]
fn a_lost_default_is_refused() {
    let (_root, migrations) = migrated_to_base("lost_default");
    let refused = refused(&migrations, priority_without_default::Claim::DEF);
    assert!(
        refused[0].starts_with("`Claim::Escalated` event: field `priority` loses `#[serde(default)]`"),
        "{refused:?}"
    );
}

#[test]
fn a_new_event_version_with_upcasters_accepts_the_change_and_cannot_go_back() {
    let (_root, migrations) = migrated_to_base("versions");
    let Generated::Written { changes, .. } =
        migrations.generate(&[approved_v2::Claim::DEF], &Generate::default()).unwrap()
    else {
        panic!("the new column needs a migration");
    };
    assert!(
        changes
            .iter()
            .any(|c| c == "`Claim::Approved` event: version 2 (events stored at version 1 are upcast when read)"),
        "{changes:?}"
    );
    let refused = refused(&migrations, base::Claim::DEF);
    assert!(refused[0].contains("version goes back from 2 to 1"), "{refused:?}");
    assert!(refused[0].contains("keep `#[event(version = 2)]`"), "{refused:?}");
}

#[test]
fn snapshots_without_event_payloads_still_load() {
    let root = TempDir::new("format_1");
    let migrations = Migrations::<Sqlite>::new(&root.0);
    std::fs::create_dir_all(migrations.dir()).unwrap();
    let old = r#"{"format": 1, "version": 1, "support": 3, "machines": [{"name": "Claim", "table": "claims",
        "events_table": "claim_events", "id": "i64", "id_generated": true, "statuses": ["filed"],
        "columns": [{"name": "customer", "ty": "text", "nullable": false, "indexed": false}]}]}"#;
    std::fs::write(migrations.dir().join(statefold::migrate::SNAPSHOT_FILE), old).unwrap();
    let snapshot = migrations.snapshot().unwrap();
    assert!(snapshot.machines[0].events.is_empty());
    let plan = migrations.plan(&[base::Claim::DEF]).unwrap();
    assert!(plan.events.is_empty(), "nothing to compare with: {:?}", plan.events);
    assert!(plan.changes.iter().any(|c| matches!(c, statefold::migrate::Change::AddEventVersions { .. })));
}
