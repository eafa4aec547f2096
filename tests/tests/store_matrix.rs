//! The store's behaviour on every backend through `#[statefold::test]`: each
//! test runs once per backend (`<test>::sqlite`, `::postgres`, `::mysql`),
//! in a database of its own that is dropped afterwards. PostgreSQL and MySQL
//! tests are ignored when `STATEFOLD_TEST_POSTGRES_URL` or
//! `STATEFOLD_TEST_MYSQL_URL` is unset at build time (failed with `CI` set).
//! Also the attribute's own behaviour (schema from migrations, a failed
//! test's database dropped) and given / when / then, pure and on a store.

use statefold::testing::{given, TestDatabase};
use statefold::{Error, Metadata, Record, Store};
use statefold_tests::db::TestBackend;
use statefold_tests::machines::{
    Account, Lamp, Order, OrderCancelled, OrderPaid, OrderPlaced, OrderShipped, OrderStatus, Sample, Ticket,
};
use statefold_tests::suite;

/// Insert, typed transitions, load back into a typed handle, and history.
#[statefold::test]
async fn insert_transition_load_and_history<B: TestBackend>(orders: Store<Order, B>) {
    suite::insert_transition_load_and_history(orders).await;
}

/// Listing by status pages by id, without gaps or overlaps.
#[statefold::test]
async fn list_pages_by_status<B: TestBackend>(orders: Store<Order, B>) {
    suite::list_pages_by_status(orders).await;
}

/// A transition known only at run time is checked against the declared edges.
#[statefold::test]
async fn dynamic_transition_checks_edges<B: TestBackend>(orders: Store<Order, B>) {
    suite::dynamic_transition_checks_edges(orders).await;
}

/// A write against a stale version conflicts and changes nothing.
#[statefold::test]
async fn stale_version_conflicts<B: TestBackend>(orders: Store<Order, B>) {
    suite::stale_version_conflicts(orders).await;
}

/// 32 tasks racing one transition: exactly one wins.
#[statefold::test]
async fn thirty_two_racers_one_winner<B: TestBackend>(orders: Store<Order, B>) {
    suite::thirty_two_racers_one_winner(orders).await;
}

/// Commands by id report each refusal with its typed error.
#[statefold::test]
async fn commands_by_id_report_every_refusal<B: TestBackend>(orders: Store<Order, B>) {
    suite::commands_by_id_report_every_refusal(orders).await;
}

/// Commands by id follow self-loops, with keys of every type (three stores
/// of one test share its database).
#[statefold::test]
async fn commands_by_id_follow_self_loops_and_every_key_type<B: TestBackend>(
    lamps: Store<Lamp, B>,
    tickets: Store<Ticket, B>,
    accounts: Store<Account, B>,
) {
    suite::commands_by_id_follow_self_loops_and_every_key_type(lamps, tickets, accounts).await;
}

/// 64 tasks sending one command by id: exactly one moves the record.
#[statefold::test]
async fn sixty_four_commands_by_id_one_winner<B: TestBackend>(orders: Store<Order, B>) {
    suite::sixty_four_commands_by_id_one_winner(orders).await;
}

/// Writes in the caller's transaction commit or roll back together.
#[statefold::test]
async fn caller_transaction_commits_or_rolls_back_together<B: TestBackend>(orders: Store<Order, B>) {
    suite::caller_transaction_commits_or_rolls_back_together(orders).await;
}

/// The record as of a past time is the fold of its events up to then.
#[statefold::test]
async fn as_of_folds_events_up_to_a_time<B: TestBackend>(orders: Store<Order, B>) {
    suite::as_of_folds_events_up_to_a_time(orders).await;
}

/// Every column type round-trips.
#[statefold::test]
async fn column_types_round_trip<B: TestBackend>(samples: Store<Sample, B>) {
    suite::column_types_round_trip(samples).await;
}

/// Timestamps are stored to the microsecond.
#[statefold::test]
async fn timestamps_are_stored_to_the_microsecond<B: TestBackend>(samples: Store<Sample, B>) {
    suite::timestamps_are_stored_to_the_microsecond(samples).await;
}

/// NUL in text is stored, or refused whole where the backend cannot store it.
#[statefold::test]
async fn nul_in_text_is_stored_or_refused_whole<B: TestBackend>(samples: Store<Sample, B>) {
    suite::nul_in_text_is_stored_or_refused_whole(samples).await;
}

/// Records keyed by caller-supplied UUIDs.
#[statefold::test]
async fn uuid_keys<B: TestBackend>(tickets: Store<Ticket, B>) {
    suite::uuid_keys(tickets).await;
}

/// Records keyed by caller-supplied strings.
#[statefold::test]
async fn string_keys<B: TestBackend>(accounts: Store<Account, B>) {
    suite::string_keys(accounts).await;
}

/// Text columns and string keys read back as text, byte for byte.
#[statefold::test]
async fn text_columns_read_back_as_text<B: TestBackend>(accounts: Store<Account, B>) {
    suite::text_columns_read_back_as_text(accounts).await;
}

/// A machine whose ids the database assigns refuses caller keys.
#[statefold::test]
async fn generated_ids_refuse_caller_keys<B: TestBackend>(orders: Store<Order, B>) {
    suite::generated_ids_refuse_caller_keys(orders).await;
}

/// A fault before commit writes nothing.
#[statefold::test]
async fn fault_before_commit_writes_nothing<B: TestBackend>(orders: Store<Order, B>) {
    suite::fault_before_commit_writes_nothing(orders).await;
}

/// A fault after commit leaves the write durable.
#[statefold::test]
async fn fault_after_commit_is_durable<B: TestBackend>(orders: Store<Order, B>) {
    suite::fault_after_commit_is_durable(orders).await;
}

/// Many writes with faults and retries leave no partial write.
#[statefold::test]
async fn chaos_with_retries_leaves_no_partial_write<B: TestBackend>(tickets: Store<Ticket, B>) {
    suite::chaos_with_retries_leaves_no_partial_write(tickets).await;
}

// The attribute itself.

/// Without a type parameter, stores are on the test's backend all the same;
/// a test may return a `Result`, and takes its database too.
#[statefold::test]
async fn stores_without_a_type_parameter(orders: Store<Order>, db: TestDatabase) -> Result<(), Error> {
    assert!(db.name().starts_with("sf_stores_without_a_type_"), "{}", db.name());
    assert!(db.url().contains(db.name()), "{}", db.url());
    orders.check_schema().await?;
    let placed = orders.insert(OrderPlaced { customer: "ada".into(), amount_cents: 1 }).await?;
    let again = db.store::<Order>().load(placed.id()).await?;
    assert_eq!(again.row().version, 1);
    Ok(())
}

/// With `migrations = ".."`, the schema is the migrations' (recorded by
/// sqlx's migrator), support tables included.
#[statefold::test(migrations = "migrations")]
async fn schema_from_migrations<B: TestBackend>(orders: Store<Order, B>, db: TestDatabase<B>) {
    orders.check_schema().await.expect("the migrations create the machine's tables");
    let applied = B::integers(db.pool(), "SELECT COUNT(*) FROM _sqlx_migrations").await.expect("sqlx's table");
    assert_eq!(applied, [1]);
    let cursors = B::integers(db.pool(), "SELECT COUNT(*) FROM statefold_cursors").await.expect("a support table");
    assert_eq!(cursors, [0]);
}

/// The migrations under `tests/migrations` are those of the suite's `Order`.
#[test]
fn migrations_match_the_code() {
    use statefold::migrate::Migrations;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let machines = [<Order as statefold::Machine>::DEF];
    Migrations::<statefold::Sqlite>::new(root).check(&machines).expect("sqlite migrations are current");
    Migrations::<statefold::Postgres>::new(root).check(&machines).expect("postgres migrations are current");
    Migrations::<statefold::MySql>::new(root).check(&machines).expect("mysql migrations are current");
}

/// `backends(..)` restricts a test: this one has a `sqlite` test only
/// (`tests/ui/test/backends_restrict.rs` shows the others do not exist).
#[statefold::test(backends(sqlite))]
async fn on_sqlite_only(orders: Store<Order>, db: TestDatabase) {
    assert!(db.url().starts_with("sqlite://"), "{}", db.url());
    assert!(orders.find(&1).await.unwrap().is_none());
}

/// A test that panics still passes under `#[should_panic]`, its database
/// dropped on the way.
#[statefold::test(backends(sqlite))]
#[should_panic(expected = "the record is in `Placed`, not in `Paid` as expected")]
async fn should_panic_is_passed_on(orders: Store<Order>) {
    given(Vec::<Order>::new()).when_dynamic(placed()).on(&orders).await.state(OrderStatus::Paid);
}

mod dropped {
    //! A test's database is dropped when it ends, passed or panicked.

    use statefold::testing::__private::{run, Schema};
    use statefold::testing::TestBackend;
    use statefold::{MySql, Postgres, Sqlite};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::{Arc, Mutex};

    /// Runs a test that records its database's name and URL and then
    /// panics; returns them once the panic is caught.
    fn run_and_panic<B: TestBackend>() -> (String, String) {
        let seen = Arc::new(Mutex::new((String::new(), String::new())));
        let inside = Arc::clone(&seen);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run::<B, _, _>("dropped", Schema::Tables, |db| async move {
                *inside.lock().unwrap() = (db.name().to_owned(), db.url().to_owned());
                panic!("the test fails");
            })
        }));
        let message = outcome.expect_err("the panic goes on");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"the test fails"));
        let seen = seen.lock().unwrap().clone();
        assert!(seen.0.starts_with("sf_dropped_"), "{seen:?}");
        seen
    }

    #[test]
    fn sqlite() {
        let (_, url) = run_and_panic::<Sqlite>();
        let path = url.strip_prefix("sqlite://").expect("a file URL");
        assert!(!std::path::Path::new(path).exists(), "{path} is removed");
    }

    #[tokio::test]
    #[cfg_attr(statefold_no_postgres_url, ignore = "STATEFOLD_TEST_POSTGRES_URL is not set (see DEVELOPERS.md)")]
    async fn postgres() {
        let (name, _) = tokio::task::spawn_blocking(run_and_panic::<Postgres>).await.expect("no other panic");
        let server = std::env::var("STATEFOLD_TEST_POSTGRES_URL").expect("the server");
        let pool = sqlx::PgPool::connect(&server).await.expect("PostgreSQL is up");
        let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&pool)
            .await
            .expect("databases listed");
        assert_eq!(found, 0, "{name} is dropped");
    }

    #[tokio::test]
    #[cfg_attr(statefold_no_mysql_url, ignore = "STATEFOLD_TEST_MYSQL_URL is not set (see DEVELOPERS.md)")]
    async fn mysql() {
        let (name, _) = tokio::task::spawn_blocking(run_and_panic::<MySql>).await.expect("no other panic");
        let server = std::env::var("STATEFOLD_TEST_MYSQL_URL").expect("the server");
        let pool = sqlx::MySqlPool::connect(&server).await.expect("MySQL is up");
        let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?")
            .bind(&name)
            .fetch_one(&pool)
            .await
            .expect("databases listed");
        assert_eq!(found, 0, "{name} is dropped");
    }
}

// given / when / then.

fn placed() -> Order {
    Order::Placed { customer: "ada".into(), amount_cents: 4200 }
}

fn paid() -> Order {
    Order::Paid { payment_ref: "pi_1".into() }
}

/// Typed: given a paid order, when shipped, then one event and the order is shipped.
#[test]
fn typed_transition_without_a_database() {
    given([placed(), paid()])
        .when(|order: Record<Order, OrderPaid>| order.transition(OrderShipped { tracking: "1Z".into() }))
        .then([Order::Shipped { tracking: "1Z".into() }])
        .state(OrderStatus::Shipped)
        .row(|row| {
            assert_eq!((row.version, row.customer.as_str()), (3, "ada"));
            assert_eq!((row.payment_ref.as_deref(), row.tracking.as_deref()), (Some("pi_1"), Some("1Z")));
        });
}

/// Dynamic: an undeclared edge is the store's typed error; an empty history is an insert.
#[test]
fn dynamic_transition_without_a_database() {
    let error = given([placed()])
        .when_dynamic(Order::Delivered)
        .then_error(|e| matches!(e, Error::InvalidTransition { from: "Placed", to: "Delivered", .. }));
    assert!(error.to_string().contains("valid sources of Delivered are: Shipped"), "{error}");
    given(Vec::<Order>::new()).when_dynamic(placed()).then([placed()]).state(OrderStatus::Placed);
    given(Vec::<Order>::new())
        .when_dynamic(paid())
        .then_error(|e| matches!(e, Error::NotInitial { state: "Paid", .. }));
    given([placed(), paid()])
        .when_dynamic(Order::Cancelled { reason: "late".into() })
        .then([Order::Cancelled { reason: "late".into() }])
        .state(OrderStatus::Cancelled);
}

/// A mismatch panics with a line diff of the events.
#[test]
#[should_panic(expected = "the events differ from the expected ones (- expected, + actual):")]
fn mismatched_events_panic_with_a_diff() {
    given([placed()]).when_dynamic(paid()).then([Order::Paid { payment_ref: "pi_2".into() }]);
}

/// The diff marks the differing line only.
#[test]
fn the_diff_shows_what_differs() {
    let outcome = std::panic::catch_unwind(|| {
        given([placed()]).when_dynamic(paid()).then([Order::Paid { payment_ref: "pi_2".into() }]);
    });
    let message = outcome.expect_err("a mismatch panics");
    let message = message.downcast_ref::<String>().expect("a message");
    let changed: Vec<&str> = message.lines().filter(|l| l.starts_with("- ") || l.starts_with("+ ")).collect();
    assert_eq!(changed, ["-         payment_ref: \"pi_2\",", "+         payment_ref: \"pi_1\","], "{message}");
}

/// A history that a store would not have written is refused, naming the step.
#[test]
#[should_panic(expected = "event 2 of the given history goes from `Placed` to `Shipped`: no `#[from(..)]` edge")]
fn an_impossible_history_is_refused() {
    given([placed(), Order::Shipped { tracking: "1Z".into() }]).when_dynamic(Order::Delivered).outcome();
}

/// A typed `when` taking another state than the history's last is refused.
#[test]
#[should_panic(expected = "the given history ends in `Placed`, but `when` takes a record in `Paid`")]
fn a_typed_when_in_the_wrong_state_is_refused() {
    given([placed()])
        .when(|order: Record<Order, OrderPaid>| order.transition(OrderCancelled { reason: "x".into() }))
        .outcome();
}

/// The same scenarios against a store, on every backend: the same events,
/// states and errors as without a database, plus what only a store can say.
#[statefold::test]
async fn given_when_then_on_a_store<B: TestBackend>(orders: Store<Order, B>) {
    given([placed(), paid()])
        .when(|order: Record<Order, OrderPaid>| {
            order.transition(OrderShipped { tracking: "1Z".into() }).with_metadata(Metadata::new().actor("ops"))
        })
        .on(&orders)
        .await
        .then([Order::Shipped { tracking: "1Z".into() }])
        .state(OrderStatus::Shipped)
        .row(|row| assert_eq!((row.version, row.tracking.as_deref()), (3, Some("1Z"))));
    given([placed()])
        .when_dynamic(Order::Delivered)
        .on(&orders)
        .await
        .then_error(|e| matches!(e, Error::InvalidTransition { from: "Placed", to: "Delivered", .. }));
    given(Vec::<Order>::new()).when_dynamic(placed()).on(&orders).await.then([placed()]);

    // Each scenario is a record of its own, its history written as given.
    let (events, row) = given([placed(), paid()])
        .when_dynamic(Order::Cancelled { reason: "late".into() })
        .on(&orders)
        .await
        .into_result()
        .expect("cancelled");
    assert_eq!(events, [Order::Cancelled { reason: "late".into() }]);
    let history = orders.history(&row.id).await.unwrap();
    assert_eq!(history.iter().map(|e| e.event.clone()).collect::<Vec<_>>(), [placed(), paid(), events[0].clone()]);
    assert!(orders.audit().await.unwrap().is_clean());
}

/// The README's example of "Testing your machines" is `tests/readme_testing.rs`, word for word.
#[test]
fn the_readme_example_is_the_one_tested() {
    let readme = include_str!("../../README.md");
    let example = include_str!("readme_testing.rs");
    assert!(readme.contains(&format!("```rust,ignore\n{example}```")), "README.md and tests/readme_testing.rs differ");
}
