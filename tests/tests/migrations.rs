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
