//! The store's behaviour suite, written once against [`TestBackend`] and run
//! on every backend. Each case reads as given / when / then, and works in a
//! database of its own. Cases that take their stores as parameters run
//! through `#[statefold::test]` (`tests/store_matrix.rs`); those that write
//! SQL behind the store's back make their database themselves and run
//! through [`suite!`](crate::suite!).

use crate::db::{Arg, TestBackend};
use crate::machines::{
    Account, AccountActive, AccountFrozen, AccountState, AccountStatus, Detail, Order, OrderCancelled, OrderPaid,
    OrderPlaced, OrderShipped, OrderState, OrderStatus, Sample, SampleChecked, SampleState, SampleStatus, SampleTaken,
    Ticket, TicketClosed, TicketOpen, TicketState, TicketStatus,
};
use crate::machines::{Lamp, LampOff, LampState, LampStatus};
use chrono::{DateTime, Duration, TimeZone, Utc};
use statefold::{Error, Fate, FaultPoint, Metadata, Page, Problem, RepairOptions, Store, Transition, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Instantiates the cases that make their own database as `#[tokio::test]`s for one backend.
#[macro_export]
macro_rules! suite {
    ($backend:ty) => {
        $crate::suite!($backend, ignore if any(), "");
    };
    ($backend:ty, ignore if $unset:meta, $why:literal) => {
        $crate::suite!(@cases $backend; $unset; $why;
            audit_reports_a_corrupted_row,
            repair_rewrites_tampered_rows_and_never_loses_a_transition,
            missing_tables_are_named,
            corrupted_payload_is_a_decode_error,
            rows_under_an_earlier_state_name_still_transition,
            bad_urls_are_named,
        );
    };
    (@cases $backend:ty; $unset:meta; $why:literal; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr($unset, ignore = $why)]
        async fn $case() {
            $crate::suite::$case::<$backend>().await;
        }
    )*};
}

fn placed(customer: &str, amount_cents: i64) -> OrderPlaced {
    OrderPlaced { customer: customer.into(), amount_cents }
}

fn paid(payment_ref: &str) -> OrderPaid {
    OrderPaid { payment_ref: payment_ref.into() }
}

/// The record's current version and number of events.
async fn version_and_events<B: TestBackend>(store: &Store<Order, B>, id: i64) -> (i64, usize) {
    let state = store.load(&id).await.expect("the order loads");
    (state.row().version, store.history(&id).await.expect("history loads").len())
}

/// Insert, typed transitions, load back into a typed handle, and history.
pub async fn insert_transition_load_and_history<B: TestBackend>(store: Store<Order, B>) {
    // Given an order placed, paid (with metadata) and shipped
    let placed = store.insert(placed("ada", 4200)).await.unwrap();
    assert_eq!((placed.version(), placed.status()), (1, OrderStatus::Placed));
    assert_eq!((placed.row().customer.as_str(), placed.row().payment_ref.as_deref()), ("ada", None));
    let meta = Metadata::new().actor("ada").trace_id("trace-1").correlation_id("corr-1").idempotency_key("key-1");
    let paid = store.apply(placed.clone().transition(paid("pay_1")).with_metadata(meta.clone())).await.unwrap();
    assert_eq!(paid.version(), 2);
    assert_eq!((paid.row().customer.as_str(), paid.row().payment_ref.as_deref()), ("ada", Some("pay_1")));
    let shipped = store.apply(paid.clone().transition(OrderShipped { tracking: "trk_1".into() })).await.unwrap();

    // When it is loaded, then it comes back as the typed handle of its state
    match store.load(placed.id()).await.unwrap() {
        OrderState::Shipped(record) => assert_eq!(record, shipped),
        other => panic!("expected a shipped order, got {other:?}"),
    }
    assert_eq!(store.find(placed.id()).await.unwrap().map(OrderState::into_row), Some(shipped.row().clone()));

    // And its history has one event per change, in order, with metadata
    let history = store.history(placed.id()).await.unwrap();
    let steps: Vec<_> = history.iter().map(|e| (e.from, e.to, e.version)).collect();
    assert_eq!(
        steps,
        [
            (None, OrderStatus::Placed, 1),
            (Some(OrderStatus::Placed), OrderStatus::Paid, 2),
            (Some(OrderStatus::Paid), OrderStatus::Shipped, 3),
        ]
    );
    assert!(history.windows(2).all(|w| w[0].position < w[1].position), "positions increase");
    assert!(history.iter().all(|e| e.record_id == *placed.id()));
    assert_eq!(history[0].event, Order::Placed { customer: "ada".into(), amount_cents: 4200 });
    assert_eq!(history[1].event, Order::Paid { payment_ref: "pay_1".into() });
    assert_eq!((&history[0].metadata, &history[1].metadata), (&Metadata::new(), &meta));
    assert_eq!(history[0].created_at, placed.row().created_at);
    assert_eq!(history[2].created_at, shipped.row().updated_at);

    // And an unknown id is not found
    assert!(store.find(&999_999).await.unwrap().is_none());
    let error = store.load(&999_999).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { machine: "Order", ref id } if id == "999999"), "{error}");
    assert!(store.history(&999_999).await.unwrap().is_empty());
}

/// Listing by status pages by id, without gaps or overlaps.
pub async fn list_pages_by_status<B: TestBackend>(store: Store<Order, B>) {
    // Given five orders, of which the second and fourth are paid
    let mut ids = Vec::new();
    for n in 1..=5 {
        let order = store.insert(placed(&format!("customer {n}"), n * 100)).await.unwrap();
        if n % 2 == 0 {
            store.apply(order.clone().transition(paid(&format!("pay_{n}")))).await.unwrap();
        }
        ids.push(*order.id());
    }

    // When the placed ones are listed two at a time
    let ids_of = |rows: Vec<crate::machines::OrderRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let first = store.list(OrderStatus::Placed, Page::first(2)).await.unwrap();
    assert_eq!(first[0].customer, "customer 1");
    let first = ids_of(first);
    let second = ids_of(store.list(OrderStatus::Placed, Page::after(first[1], 2)).await.unwrap());
    let third = ids_of(store.list(OrderStatus::Placed, Page::after(second[0], 2)).await.unwrap());

    // Then the pages cover them in id order, then end
    assert_eq!((first, second, third), (vec![ids[0], ids[2]], vec![ids[4]], vec![]));
    let paid = store.list(OrderStatus::Paid, Page::first(10)).await.unwrap();
    assert_eq!(ids_of(paid.clone()), [ids[1], ids[3]]);
    assert_eq!(paid[1].payment_ref.as_deref(), Some("pay_4"));
    assert!(store.list(OrderStatus::Delivered, Page::first(10)).await.unwrap().is_empty());
}

/// A transition known only at run time is checked against the declared edges.
pub async fn dynamic_transition_checks_edges<B: TestBackend>(store: Store<Order, B>) {
    let id = *store.insert(placed("ada", 4200)).await.unwrap().id();

    // When a declared edge is taken with a value of the enum
    let state = store.transition(&id, Order::Paid { payment_ref: "pay_1".into() }, Metadata::new().actor("api"));
    match state.await.unwrap() {
        OrderState::Paid(record) => {
            assert_eq!((record.version(), record.row().payment_ref.as_deref()), (2, Some("pay_1")))
        }
        other => panic!("expected a paid order, got {other:?}"),
    }
    assert_eq!(store.history(&id).await.unwrap()[1].metadata.actor.as_deref(), Some("api"));

    // When an undeclared edge is requested, then it is an error naming both states and the valid sources
    let error = store.transition(&id, Order::Delivered, Metadata::new()).await.unwrap_err();
    match &error {
        Error::InvalidTransition { machine, id: record, from, to, valid } => {
            assert_eq!(
                (*machine, record.as_str(), *from, *to),
                ("Order", id.to_string().as_str(), "Paid", "Delivered")
            );
            assert_eq!(valid, &["Shipped"]);
        }
        other => panic!("expected InvalidTransition, got {other}"),
    }
    assert!(error.to_string().contains("cannot go from Paid to Delivered: valid sources of Delivered are: Shipped"));
    let error = store.transition(&id, placed("x", 1).into(), Metadata::new()).await.unwrap_err();
    assert!(error.to_string().contains("no state leads to Placed"), "{error}");

    // And a forged typed transition along an undeclared edge is refused the same way
    let forged = Transition {
        id,
        from: OrderStatus::Placed,
        version: 1,
        event: OrderShipped { tracking: "t".into() },
        metadata: Metadata::new(),
    };
    assert!(matches!(store.apply(forged).await, Err(Error::InvalidTransition { from: "Placed", to: "Shipped", .. })));

    // And nothing changed
    assert_eq!(version_and_events(&store, id).await, (2, 2));

    // And an unknown record is not found
    let error = store.transition(&424_242, Order::Delivered, Metadata::new()).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error}");

    // And a record inserted from a value of the enum must start in an initial state
    let error = store.insert_dynamic(None, Order::Paid { payment_ref: "p".into() }, Metadata::new()).await.unwrap_err();
    assert!(matches!(&error, Error::NotInitial { state: "Paid", initial, .. } if initial == &["Placed"]), "{error}");
    assert_eq!(store.list(OrderStatus::Paid, Page::first(10)).await.unwrap().len(), 1);
    let state = store.insert_dynamic(None, placed("bob", 1).into(), Metadata::new().actor("api")).await.unwrap();
    assert!(matches!(state, OrderState::Placed(ref r) if r.row().customer == "bob" && r.version() == 1));
}

/// A write against a version that is no longer current changes nothing.
pub async fn stale_version_conflicts<B: TestBackend>(store: Store<Order, B>) {
    // Given two readers of the same placed order, the first of which pays it
    let read = store.insert(placed("ada", 4200)).await.unwrap();
    store.apply(read.clone().transition(paid("pay_1"))).await.unwrap();

    // When the second cancels from what it read
    let error =
        store.apply(read.clone().transition(OrderCancelled { reason: "changed mind".into() })).await.unwrap_err();

    // Then it is a conflict naming the expected and the actual state
    match &error {
        Error::Conflict { machine, id, expected_status, expected_version, actual_status, actual_version } => {
            assert_eq!((*machine, id.as_str()), ("Order", read.id().to_string().as_str()));
            assert_eq!((*expected_status, *expected_version), ("Placed", 1));
            assert_eq!((actual_status.as_str(), *actual_version), ("Paid", 2));
        }
        other => panic!("expected Conflict, got {other}"),
    }
    assert!(error.to_string().contains("expected Placed at version 1, found Paid at version 2"), "{error}");

    // And nothing changed
    assert_eq!(version_and_events(&store, *read.id()).await, (2, 2));
    assert_eq!(store.load(read.id()).await.unwrap().into_row().reason, None);
}

/// 32 tasks race the same transition: exactly one wins.
pub async fn thirty_two_racers_one_winner<B: TestBackend>(store: Store<Order, B>) {
    let order = store.insert(placed("ada", 4200)).await.unwrap();

    // When 32 tasks pay the same order from the same read
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let (store, transition) = (store.clone(), order.clone().transition(paid(&format!("pay_{n}"))));
            tokio::spawn(async move { store.apply(transition).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("the task runs") {
            Ok(record) => winners.push(record),
            Err(Error::Conflict { actual_status, actual_version: 2, .. }) if actual_status == "Paid" => {}
            Err(other) => panic!("expected a conflict, got {other}"),
        }
    }

    // Then exactly one won, and the row has exactly one new event: the winner's
    assert_eq!(winners.len(), 1);
    assert_eq!(version_and_events(&store, *order.id()).await, (2, 2));
    let row = store.load(order.id()).await.unwrap().into_row();
    assert_eq!(row.payment_ref, winners[0].row().payment_ref);
    assert!(store.audit().await.unwrap().is_clean());
}

/// A command by id (one statement on PostgreSQL) refuses with the same typed
/// errors as ever, writing nothing: a record that does not exist, a state the
/// event's state cannot be entered from (with the valid sources), and, with
/// If-Match, a record no longer at the state and version the client saw.
pub async fn commands_by_id_report_every_refusal<B: TestBackend>(store: Store<Order, B>) {
    let order = store.insert(placed("ada", 4200)).await.unwrap();
    let id = *order.id();

    let missing = store.transition(&999, Order::Paid { payment_ref: "p".into() }, Metadata::new()).await;
    assert!(matches!(&missing, Err(Error::NotFound { id, .. }) if id == "999"), "{missing:?}");

    let ship = Order::Shipped { tracking: "1Z".into() };
    let refused = store.transition(&id, ship.clone(), Metadata::new()).await.unwrap_err();
    assert!(
        matches!(&refused, Error::InvalidTransition { from: "Placed", to: "Shipped", valid, .. } if valid == &["Paid"]),
        "{refused}"
    );
    assert_eq!(version_and_events(&store, id).await, (1, 1), "nothing written");

    // A state with several sources: entered from the one the row is in, recorded as such.
    let cancelled = store.transition(&id, Order::Cancelled { reason: "changed mind".into() }, Metadata::new()).await;
    assert!(matches!(cancelled.unwrap(), OrderState::Cancelled(_)));
    let history = store.history(&id).await.unwrap();
    assert_eq!(
        (history[1].from, history[1].to, history[1].version),
        (Some(OrderStatus::Placed), OrderStatus::Cancelled, 2)
    );

    // If-Match: the client saw Placed at version 1; the record has moved on.
    let pay = Order::Paid { payment_ref: "p".into() };
    let stale = store.transition_if_match(&id, OrderStatus::Placed, 1, pay.clone(), Metadata::new()).await.unwrap_err();
    assert!(
        matches!(&stale, Error::Conflict { expected_status: "Placed", expected_version: 1, actual_status, actual_version: 2, .. } if actual_status == "Cancelled"),
        "{stale}"
    );
    // An edge the machine does not declare is refused before anything is sent.
    let illegal = store.transition_if_match(&id, OrderStatus::Cancelled, 2, pay, Metadata::new()).await.unwrap_err();
    assert!(matches!(illegal, Error::InvalidTransition { from: "Cancelled", to: "Paid", .. }), "{illegal}");
    // And a fresh order at the version the client saw moves.
    let fresh = store.insert(placed("bob", 10)).await.unwrap();
    let paid = Order::Paid { payment_ref: "q".into() };
    let moved = store.transition_if_match(fresh.id(), OrderStatus::Placed, 1, paid, Metadata::new()).await.unwrap();
    assert_eq!(moved.row().version, 2);
    assert_eq!(version_and_events(&store, id).await, (2, 2));
    assert!(store.audit().await.unwrap().is_clean());
}

/// Commands by id enter a state from itself (a self-loop) as often as asked,
/// and work with keys of every type.
pub async fn commands_by_id_follow_self_loops_and_every_key_type<B: TestBackend>(
    lamps: Store<Lamp, B>,
    tickets: Store<Ticket, B>,
    accounts: Store<Account, B>,
) {
    let lamp = lamps.insert(LampOff).await.unwrap();
    for watts in [40, 60, 100] {
        lamps.transition(lamp.id(), Lamp::On { watts }, Metadata::new()).await.unwrap();
    }
    let LampState::On(on) = lamps.load(lamp.id()).await.unwrap() else { panic!("the lamp is on") };
    assert_eq!((on.row().watts, on.version()), (Some(100), 4));
    let history = lamps.history(lamp.id()).await.unwrap();
    assert_eq!(history[3].from, Some(LampStatus::On), "a self-loop records where it came from");
    assert!(lamps.audit().await.unwrap().is_clean());

    let key = Uuid::new_v4();
    tickets.insert_with_id(key, TicketOpen { title: "broken".into() }).await.unwrap();
    tickets.transition(&key, Ticket::Closed { resolution: "fixed".into() }, Metadata::new()).await.unwrap();
    let reopened = tickets.transition(&key, Ticket::Open { title: "again".into() }, Metadata::new()).await.unwrap();
    assert!(matches!(reopened, TicketState::Open(_)));
    let unknown = Uuid::new_v4();
    let missing = tickets.transition(&unknown, Ticket::Closed { resolution: "x".into() }, Metadata::new()).await;
    assert!(matches!(missing, Err(Error::NotFound { .. })));

    accounts.insert_with_id("ada".to_owned(), AccountActive { email: "ada@example.com".into() }).await.unwrap();
    let ada = "ada".to_owned();
    let frozen = accounts.transition(&ada, Account::Frozen { reason: "audit".into() }, Metadata::new()).await;
    assert!(matches!(frozen.unwrap(), AccountState::Frozen(_)));
}

/// When 64 tasks send the same command by id at once, exactly one moves the
/// record; the others are told it is no longer in a state that allows it
/// (or, having raced, that it changed); the row has one new event.
pub async fn sixty_four_commands_by_id_one_winner<B: TestBackend>(store: Store<Order, B>) {
    let order = store.insert(placed("ada", 4200)).await.unwrap();
    let id = *order.id();
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            let pay = Order::Paid { payment_ref: format!("pay_{n}") };
            tokio::spawn(async move { store.transition(&id, pay, Metadata::new()).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("the task runs") {
            Ok(state) => winners.push(state.into_row()),
            Err(Error::InvalidTransition { from: "Paid", to: "Paid", .. }) => {}
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("expected a refusal, got {other}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(version_and_events(&store, id).await, (2, 2));
    assert_eq!(store.load(&id).await.unwrap().into_row().payment_ref, winners[0].payment_ref);
    assert!(store.audit().await.unwrap().is_clean());
}

/// Writes inside the caller's transaction commit together or not at all.
pub async fn caller_transaction_commits_or_rolls_back_together<B: TestBackend>(store: Store<Order, B>) {
    let existing = store.insert(placed("ada", 4200)).await.unwrap();

    // When one transaction inserts an order, pays another and cancels the new one
    let mut tx = store.begin().await.unwrap();
    let fresh = store.insert_in(&mut tx, placed("bob", 100)).await.unwrap();
    let paid_record = store.apply_in(&mut tx, existing.clone().transition(paid("pay_1"))).await.unwrap();
    let cancel = Order::Cancelled { reason: "duplicate".into() };
    store.transition_in(&mut tx, fresh.id(), cancel, Metadata::new()).await.unwrap();
    // and one of its writes fails (a stale read): the transaction stays usable
    let stale = store.apply_in(&mut tx, existing.clone().transition(paid("pay_2"))).await.unwrap_err();
    assert!(matches!(stale, Error::Conflict { actual_version: 2, .. }), "{stale}");
    assert!(matches!(store.load_in(&mut tx, fresh.id()).await.unwrap(), OrderState::Cancelled(_)));
    tx.commit().await.unwrap();

    // Then all of it is there
    assert!(matches!(store.load(fresh.id()).await.unwrap(), OrderState::Cancelled(_)));
    assert_eq!(version_and_events(&store, *existing.id()).await, (2, 2));

    // When another transaction writes twice, then rolls back
    let mut tx = store.begin().await.unwrap();
    let ghost = store.insert_in(&mut tx, placed("ghost", 1)).await.unwrap();
    store.apply_in(&mut tx, paid_record.clone().transition(OrderShipped { tracking: "t".into() })).await.unwrap();
    tx.rollback().await.unwrap();

    // Then none of it is there
    assert!(store.find(ghost.id()).await.unwrap().is_none());
    assert!(store.history(ghost.id()).await.unwrap().is_empty());
    assert_eq!(version_and_events(&store, *existing.id()).await, (2, 2));
    assert!(store.audit().await.unwrap().is_clean());
}

/// The record as of a past time is the fold of its events up to then.
pub async fn as_of_folds_events_up_to_a_time<B: TestBackend>(store: Store<Order, B>) {
    // Given an order placed, paid and cancelled
    let placed = store.insert(placed("ada", 4200)).await.unwrap();
    let paid = store.apply(placed.clone().transition(paid("pay_1"))).await.unwrap();
    let cancelled = store.apply(paid.clone().transition(OrderCancelled { reason: "late".into() })).await.unwrap();
    let id = *placed.id();
    let history = store.history(&id).await.unwrap();

    // Then as of each event's time it is the row that event produced
    for (event, row) in history.iter().zip([placed.row(), paid.row(), cancelled.row()]) {
        assert_eq!(
            store.as_of(&id, event.created_at).await.unwrap().as_ref(),
            Some(row),
            "as of version {}",
            event.version
        );
    }
    // And before the first event it did not exist; long after, it is the current row
    let before = history[0].created_at - Duration::microseconds(1);
    assert_eq!(store.as_of(&id, before).await.unwrap(), None);
    let later = store.as_of(&id, Utc::now() + Duration::days(1)).await.unwrap();
    assert_eq!(later, Some(store.load(&id).await.unwrap().into_row()));
    assert_eq!(store.as_of(&424_242, Utc::now()).await.unwrap(), None);
}

/// The audit is clean until a row is changed behind the store's back.
pub async fn audit_reports_a_corrupted_row<B: TestBackend>() {
    let Some(db) = B::create("audit").await else { return };
    let store = db.store::<Order>().await;

    // Given four orders, one of them paid
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(*store.insert(placed(&format!("c{n}"), 4200)).await.unwrap().id());
    }
    store.transition(&ids[1], Order::Paid { payment_ref: "pay".into() }, Metadata::new()).await.unwrap();
    let report = store.audit().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!((report.records, report.events), (4, 5));

    // When rows and events are changed with plain SQL
    let (q, p) = (B::quote_ident, B::param);
    let (orders, events) = (q("orders"), q("order_events"));
    let update = format!("UPDATE {orders} SET {} = {} WHERE {} = {}", q("amount_cents"), p(1), q("id"), p(2));
    assert_eq!(db.execute(&update, vec![Arg::I64(999), Arg::I64(ids[0])]).await, 1);
    let update = format!(
        "UPDATE {orders} SET {} = {}, {} = {} WHERE {} = {}",
        q("status"),
        p(1),
        q("version"),
        p(2),
        q("id"),
        p(3)
    );
    db.execute(&update, vec![Arg::Text("paid".into()), Arg::I64(7), Arg::I64(ids[1])]).await;
    db.execute(&format!("DELETE FROM {orders} WHERE {} = {}", q("id"), p(1)), vec![Arg::I64(ids[2])]).await;
    db.execute(&format!("DELETE FROM {events} WHERE {} = {}", q("record_id"), p(1)), vec![Arg::I64(ids[3])]).await;

    // Then the audit reports each difference, naming the record and the column
    let report = store.audit().await.unwrap();
    let problems: Vec<(String, Problem)> =
        report.mismatches.iter().map(|m| (m.record.clone(), m.problem.clone())).collect();
    let text = |n: usize| ids[n].to_string();
    assert!(problems.contains(&(
        text(0),
        Problem::Column { column: "amount_cents", row: Value::I64(999), folded: Value::I64(4200) }
    )));
    assert!(problems.contains(&(text(1), Problem::Version { row: 7, folded: 2 })));
    assert!(problems.contains(&(text(2), Problem::MissingRow { events: 1 })));
    assert!(problems.contains(&(text(3), Problem::MissingEvents)));
    assert_eq!(problems.len(), 4, "{report}");
    assert!(report
        .to_string()
        .contains(&format!("record `{}`: column `amount_cents` is 999 in the row but 4200 by its events", ids[0])));

    // And a status that differs from the events is reported too
    db.execute(
        &format!("UPDATE {orders} SET {} = {} WHERE {} = {}", q("status"), p(1), q("id"), p(2)),
        vec![Arg::Text("cancelled".into()), Arg::I64(ids[0])],
    )
    .await;
    let report = store.audit().await.unwrap();
    assert!(report
        .mismatches
        .iter()
        .any(|m| m.record == text(0)
            && m.problem == Problem::Status { row: "cancelled".into(), folded: "placed".into() }));
}

/// Missing tables are errors naming the table and what to do.
pub async fn missing_tables_are_named<B: TestBackend>() {
    let Some(db) = B::create("missing").await else { return };
    let store = db.bare_store::<Order>();

    // Given no tables, then reads and writes name the records table
    let error = store.load(&1).await.unwrap_err();
    assert!(matches!(&error, Error::MissingTable { table } if table == "orders"), "{error}");
    assert!(error.to_string().contains("create_tables") && error.to_string().contains("migrations"), "{error}");
    let error = store.insert(placed("ada", 1)).await.unwrap_err();
    assert!(matches!(&error, Error::MissingTable { table } if table == "orders"), "{error}");

    // Given only the records table, then the events table is named, and no row is left behind
    db.execute(&B::records_table_sql(<Order as statefold::Machine>::DEF), vec![]).await;
    let error = store.history(&1).await.unwrap_err();
    assert!(matches!(&error, Error::MissingTable { table } if table == "order_events"), "{error}");
    let error = store.insert(placed("ada", 1)).await.unwrap_err();
    assert!(matches!(&error, Error::MissingTable { table } if table == "order_events"), "{error}");
    assert!(store.list(OrderStatus::Placed, Page::first(10)).await.unwrap().is_empty());
}

/// Given rows tampered with by SQL (a column, a status and version, both),
/// then the audit finds them, a dry run of the repair lists them and
/// changes nothing, the repair rewrites them from their events and records
/// who did it, and a transition running meanwhile is never lost.
pub async fn repair_rewrites_tampered_rows_and_never_loses_a_transition<B: TestBackend>() {
    let Some(db) = B::create("repair").await else { return };
    let store = db.store::<Order>().await;
    store.create_support_tables().await.unwrap();
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(*store.insert(placed(&format!("c{n}"), 4200)).await.unwrap().id());
    }
    store.transition(&ids[1], Order::Paid { payment_ref: "pay".into() }, Metadata::new()).await.unwrap();

    // Given rows changed behind the store's back
    let (q, p) = (B::quote_ident, B::param);
    let orders = q("orders");
    let amount = format!("UPDATE {orders} SET {} = {} WHERE {} = {}", q("amount_cents"), p(1), q("id"), p(2));
    db.execute(&amount, vec![Arg::I64(1), Arg::I64(ids[0])]).await;
    db.execute(&amount, vec![Arg::I64(2), Arg::I64(ids[2])]).await;
    let status = format!(
        "UPDATE {orders} SET {} = {}, {} = {} WHERE {} = {}",
        q("status"),
        p(1),
        q("version"),
        p(2),
        q("id"),
        p(3)
    );
    db.execute(&status, vec![Arg::Text("shipped".into()), Arg::I64(9), Arg::I64(ids[1])]).await;
    let audit = store.audit().await.unwrap();
    assert!(!audit.is_clean());

    // When a dry run looks, then it lists them and changes nothing
    let dry = store.repair(RepairOptions::default()).await.unwrap();
    assert!(!dry.applied);
    let mut listed: Vec<String> = dry.repairs.iter().map(|r| r.record.clone()).collect();
    listed.sort();
    let mut tampered = vec![ids[0].to_string(), ids[1].to_string(), ids[2].to_string()];
    tampered.sort();
    assert_eq!(listed, tampered, "{dry}");
    let order_1 = dry.repairs.iter().find(|r| r.record == ids[0].to_string()).unwrap();
    assert_eq!(order_1.changes, [("amount_cents", Value::I64(1), Value::I64(4200))]);
    assert_eq!(store.audit().await.unwrap().mismatches, audit.mismatches, "a dry run changes nothing");

    // When the repair runs while a transition of a tampered record runs too
    let racer = {
        let store = store.clone();
        let id = ids[2];
        tokio::spawn(
            async move { store.transition(&id, Order::Paid { payment_ref: "late".into() }, Metadata::new()).await },
        )
    };
    let applied = store.repair(RepairOptions::apply("ops")).await.unwrap();
    racer.await.unwrap().expect("the transition goes through");
    // (a record that changed under the repair is left for the next run)
    let again = store.repair(RepairOptions::apply("ops")).await.unwrap();
    assert!(again.skipped.is_empty(), "{again}");

    // Then every row is its events' fold, the transition is kept, and each repair is recorded
    assert!(store.audit().await.unwrap().is_clean(), "{applied}\n{again}");
    let OrderState::Paid(paid) = store.load(&ids[2]).await.unwrap() else { panic!("the transition was lost") };
    assert_eq!((paid.row().amount_cents, paid.row().payment_ref.as_deref()), (4200, Some("late")));
    assert_eq!(store.load(&ids[1]).await.unwrap().into_row().version, 2);
    let recorded = B::integers(&db.pool, "SELECT COUNT(*) FROM statefold_repairs WHERE actor = 'ops'").await.unwrap();
    assert_eq!(recorded, [(applied.repairs.len() + again.repairs.len()) as i64]);
    assert!(applied.repairs.len() + again.repairs.len() >= 3);
    assert!(store.repair(RepairOptions::apply("ops")).await.unwrap().is_clean());
}

/// A stored payload that no longer deserialises is an error naming its position.
pub async fn corrupted_payload_is_a_decode_error<B: TestBackend>() {
    let Some(db) = B::create("payload").await else { return };
    let store = db.store::<Order>().await;
    let order = store.insert(placed("ada", 4200)).await.unwrap();
    store.apply(order.clone().transition(paid("pay_1"))).await.unwrap();
    let id = *order.id();
    let position = store.history(&id).await.unwrap()[1].position.id();

    // When the payment's payload is changed so that its field has the wrong type
    let (q, p) = (B::quote_ident, B::param);
    let sql = format!(
        "UPDATE {} SET {} = {} WHERE {} = {}",
        q("order_events"),
        q("payload"),
        B::json_param(1),
        q("id"),
        p(2)
    );
    db.execute(&sql, vec![Arg::Text(r#"{"payment_ref": 5}"#.into()), Arg::I64(position)]).await;

    // Then reading the history is a decode error naming the event and the record
    let error = store.history(&id).await.unwrap_err();
    match &error {
        Error::Decode { machine, position: at, id: record, message } => {
            assert_eq!((*machine, at.id(), record.as_str()), ("Order", position, id.to_string().as_str()));
            assert!(message.contains("invalid type"), "{message}");
            let at = *at;
            assert!(error.to_string().contains(&format!("event at position {at} of Order record `{id}`")), "{error}");
        }
        other => panic!("expected Decode, got {other}"),
    }
    assert!(matches!(store.as_of(&id, Utc::now()).await, Err(Error::Decode { .. })));

    // And the audit reports it, while the row itself still loads
    let report = store.audit().await.unwrap();
    assert!(
        matches!(&report.mismatches[..], [m] if matches!(m.problem, Problem::History { position: p, .. } if p.id() == position)),
        "{report}"
    );
    assert!(matches!(store.load(&id).await.unwrap(), OrderState::Paid(_)));
}

fn detail(label: &str) -> Detail {
    Detail {
        label: label.into(),
        values: vec![0.1, -2.5e-10, 1e300],
        parent: Some(Box::new(Detail { label: "parent \"quoted\" 🦀".into(), values: vec![], parent: None })),
    }
}

/// Samples at the extremes of each type, and ordinary ones.
fn samples() -> Vec<SampleTaken> {
    let at = |micros| DateTime::from_timestamp_micros(micros).expect("a valid time");
    let min = SampleTaken {
        tiny: i8::MIN,
        small: i16::MIN,
        int: i32::MIN,
        big: i64::MIN,
        ubyte: u8::MIN,
        ushort: u16::MIN,
        uint: u32::MIN,
        single: f32::MIN,
        double: f64::MIN,
        flag: false,
        text: String::new(),
        bytes: Vec::new(),
        at: Utc.with_ymd_and_hms(1000, 1, 1, 0, 0, 0).unwrap(),
        uuid: Uuid::nil(),
        maybe_text: None,
        maybe_int: None,
        detail: Detail { label: String::new(), values: vec![], parent: None },
        tags: BTreeMap::new(),
        maybe_detail: None,
    };
    let max = SampleTaken {
        tiny: i8::MAX,
        small: i16::MAX,
        int: i32::MAX,
        big: i64::MAX,
        ubyte: u8::MAX,
        ushort: u16::MAX,
        uint: u32::MAX,
        single: f32::MAX,
        double: f64::MAX,
        flag: true,
        text: "quotes ' \" ` \\ and 'nested \"\"' ones".into(),
        bytes: vec![0, 255, 0, 0, 1, 0],
        at: Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + Duration::microseconds(999_999),
        uuid: Uuid::max(),
        maybe_text: Some("🦀 emoji ✨ and ünïcödé".into()),
        maybe_int: Some(i64::MAX),
        detail: detail("max"),
        tags: BTreeMap::from([("min".into(), i64::MIN), ("max".into(), i64::MAX), ("é 🦀".into(), 0)]),
        maybe_detail: Some(detail("some")),
    };
    let ordinary = SampleTaken {
        tiny: -1,
        small: 300,
        int: 70_000,
        big: 1 << 40,
        ubyte: 7,
        ushort: 40_000,
        uint: 3_000_000_000,
        single: f32::MIN_POSITIVE,
        double: f64::MIN_POSITIVE,
        flag: true,
        text: "'; DROP TABLE samples; --".into(),
        bytes: (0..=255).collect(),
        at: at(1_700_000_000_123_456),
        uuid: Uuid::new_v4(),
        maybe_text: Some("\"; DROP TABLE sample_events; --".into()),
        maybe_int: Some(-5),
        detail: detail("ordinary"),
        tags: BTreeMap::from([("'; DROP TABLE x; --".into(), 1)]),
        maybe_detail: None,
    };
    vec![min, max, ordinary]
}

/// Every column type round-trips through row and payload, extremes included.
pub async fn column_types_round_trip<B: TestBackend>(store: Store<Sample, B>) {
    for sample in samples() {
        // When a sample is inserted and loaded back
        let record = store.insert(sample.clone()).await.unwrap();
        let row = match store.load(record.id()).await.unwrap() {
            SampleState::Taken(loaded) => loaded.into_row(),
            other => panic!("expected Taken, got {other:?}"),
        };

        // Then every field is what was written, in the row and in the payload
        assert_eq!(&row, record.row());
        let stored = SampleTaken {
            tiny: row.tiny,
            small: row.small,
            int: row.int,
            big: row.big,
            ubyte: row.ubyte,
            ushort: row.ushort,
            uint: row.uint,
            single: row.single,
            double: row.double,
            flag: row.flag,
            text: row.text.clone(),
            bytes: row.bytes.clone(),
            at: row.at,
            uuid: row.uuid,
            maybe_text: row.maybe_text.clone(),
            maybe_int: row.maybe_int,
            detail: row.detail.clone(),
            tags: row.tags.clone(),
            maybe_detail: row.maybe_detail.clone(),
        };
        assert_eq!(stored, sample);
        assert_eq!(row.note, None);
        let history = store.history(record.id()).await.unwrap();
        assert_eq!(history[0].event, Sample::from(sample.clone()));

        // And a later state overwrites its columns and keeps the others
        let checked = SampleChecked { note: Some("checked ✓".into()), text: format!("{} (checked)", sample.text) };
        let checked = store.apply(record.transition(checked)).await.unwrap();
        let row = store.load(checked.id()).await.unwrap().into_row();
        assert_eq!(&row, checked.row());
        assert_eq!(
            (row.note.as_deref(), row.text, row.detail),
            (Some("checked ✓"), format!("{} (checked)", sample.text), sample.detail)
        );
    }
    assert_eq!(store.list(SampleStatus::Checked, Page::first(10)).await.unwrap().len(), 3);
    let report = store.audit().await.unwrap();
    assert!(report.is_clean(), "{report}");
}

/// Times are stored to the microsecond on every backend, in row and fold alike.
pub async fn timestamps_are_stored_to_the_microsecond<B: TestBackend>(store: Store<Sample, B>) {
    let mut sample = samples().remove(2);
    sample.at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();

    let record = store.insert(sample.clone()).await.unwrap();
    let micros = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
    assert_eq!(record.row().at, micros);
    assert_eq!(store.load(record.id()).await.unwrap().into_row().at, micros);
    assert_eq!(store.as_of(record.id(), Utc::now()).await.unwrap().map(|r| r.at), Some(micros));
    assert!(store.audit().await.unwrap().is_clean());
}

/// A NUL inside text is stored verbatim where the backend allows it, and
/// refused whole (nothing written) where it does not.
pub async fn nul_in_text_is_stored_or_refused_whole<B: TestBackend>(store: Store<Sample, B>) {
    let mut sample = samples().remove(2);
    sample.text = "before\0after".into();

    let result = store.insert(sample.clone()).await;
    if B::STORES_NUL {
        let record = result.unwrap();
        assert_eq!(store.load(record.id()).await.unwrap().into_row().text, "before\0after");
        assert_eq!(store.history(record.id()).await.unwrap()[0].event, Sample::from(sample));
    } else {
        let error = result.unwrap_err();
        assert!(matches!(error, Error::Unrepresentable { .. }), "{error}");
        assert!(error.to_string().contains("NUL"), "{error}");
        assert!(store.list(SampleStatus::Taken, Page::first(10)).await.unwrap().is_empty());
    }
}

/// A machine keyed by caller-supplied UUIDs.
pub async fn uuid_keys<B: TestBackend>(store: Store<Ticket, B>) {
    let open = |title: &str| TicketOpen { title: title.into() };

    // An insert without a key is refused (`insert` itself does not compile here)
    let error = store.create(statefold::NewRecord::new(open("no key"))).await.unwrap_err();
    assert!(matches!(error, Error::IdRequired { machine: "Ticket" }), "{error}");

    // Keys are the caller's; a taken key is a duplicate
    let mut ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        let ticket = store.insert_with_id(*id, open("printer")).await.unwrap();
        assert_eq!(ticket.id(), id);
    }
    let error = store.insert_with_id(ids[0], open("again")).await.unwrap_err();
    assert!(matches!(&error, Error::Duplicate { id: Some(id), .. } if *id == ids[0].to_string()), "{error}");

    // Typed and dynamic transitions, history and paging by key
    let TicketState::Open(ticket) = store.load(&ids[0]).await.unwrap() else { panic!("open") };
    let closed = store.apply(ticket.transition(TicketClosed { resolution: "fixed".into() })).await.unwrap();
    assert_eq!(closed.row().resolution.as_deref(), Some("fixed"));
    let reopened = store.transition(&ids[0], Ticket::Open { title: "again".into() }, Metadata::new()).await.unwrap();
    assert_eq!(reopened.row().version, 3);
    assert_eq!(store.history(&ids[0]).await.unwrap().len(), 3);
    ids.sort();
    let first = store.list(TicketStatus::Open, Page::first(3)).await.unwrap();
    let rest = store.list(TicketStatus::Open, Page::after(first[2].id, 3)).await.unwrap();
    let listed: Vec<Uuid> = first.iter().chain(&rest).map(|r| r.id).collect();
    assert_eq!(listed, ids);
    assert!(store.audit().await.unwrap().is_clean());
}

/// A machine keyed by caller-supplied strings, including hostile ones.
pub async fn string_keys<B: TestBackend>(store: Store<Account, B>) {
    let active = |email: &str| AccountActive { email: email.into() };
    // Keys compare byte for byte: case, trailing spaces and accents make other keys.
    let keys = ["ada", "Ada", "ada ", "adá", "O'Brien \"the\" `key`\\", "🦀", "'; DROP TABLE accounts; --"];

    let error = store.create(statefold::NewRecord::new(active("x@y"))).await.unwrap_err();
    assert!(matches!(error, Error::IdRequired { .. }), "{error}");
    for key in keys {
        store.insert_with_id(key.to_owned(), active(&format!("{key}@example.com"))).await.unwrap();
    }
    let error = store.insert_with_id("ada".to_owned(), active("again")).await.unwrap_err();
    assert!(matches!(error, Error::Duplicate { .. }), "{error}");

    for key in keys {
        let AccountState::Active(account) = store.load(&key.to_owned()).await.unwrap() else { panic!("active") };
        assert_eq!(account.row().email, format!("{key}@example.com"));
        let frozen = store.apply(account.transition(AccountFrozen { reason: "audit".into() })).await.unwrap();
        assert_eq!(frozen.id(), key);
    }
    let listed = store.list(crate::machines::AccountStatus::Frozen, Page::first(10)).await.unwrap();
    let mut listed: Vec<String> = listed.into_iter().map(|r| r.id).collect();
    listed.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(store.audit().await.unwrap().is_clean());
}

/// Given records and events written by the store, then a user's own query
/// through `store.pool()` reads the state names and text fields as `String`
/// (on MySQL and MariaDB, a binary collation would make the driver see
/// `VARBINARY` and refuse them).
pub async fn text_columns_read_back_as_text<B: TestBackend>(store: Store<Account, B>) {
    let account =
        store.insert_with_id("ada".to_owned(), AccountActive { email: "ada@example.com".into() }).await.unwrap();
    store.apply(account.transition(AccountFrozen { reason: "audit".into() })).await.unwrap();

    let pool = store.pool();
    let read = |sql: &'static str| async move { B::texts(pool, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")) };
    assert_eq!(read("SELECT status FROM accounts").await, ["frozen"]);
    assert_eq!(read("SELECT email FROM accounts").await, ["ada@example.com"]);
    assert_eq!(read("SELECT reason FROM accounts").await, ["audit"]);
    assert_eq!(read("SELECT kind FROM account_events ORDER BY version").await, ["active", "frozen"]);
    assert_eq!(read("SELECT to_status FROM account_events ORDER BY version").await, ["active", "frozen"]);
    assert_eq!(read("SELECT from_status FROM account_events WHERE version = 2").await, ["active"]);
}

/// Given a row still holding an earlier name of its state (written by the
/// previous release, not yet renamed by the migration), then it loads in
/// that state and transitions, typed or dynamically, and its event records
/// the current name.
pub async fn rows_under_an_earlier_state_name_still_transition<B: TestBackend>() {
    let Some(db) = B::create("earlier_names").await else { return };
    let store = db.store::<Account>().await;
    let active = |email: &str| AccountActive { email: email.into() };
    let (ada, bob) = ("ada".to_owned(), "bob".to_owned());
    store.insert_with_id(ada.clone(), active("ada@example.com")).await.unwrap();
    store.insert_with_id(bob.clone(), active("bob@example.com")).await.unwrap();
    db.execute("UPDATE accounts SET status = 'enabled'", vec![]).await;

    let AccountState::Active(account) = store.load(&ada).await.unwrap() else { panic!("active") };
    let frozen = store.apply(account.transition(AccountFrozen { reason: "audit".into() })).await.unwrap();
    assert_eq!(frozen.version(), 2);
    let reason = Account::Frozen { reason: "audit".into() };
    let row = store.transition(&bob, reason, Metadata::new()).await.unwrap();
    assert_eq!(row.status(), AccountStatus::Frozen);

    for id in [&ada, &bob] {
        let history = store.history(id).await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].from, Some(AccountStatus::Active));
    }
    let sql = "SELECT COUNT(*) FROM account_events WHERE version = 2 AND from_status = 'active'";
    assert_eq!(B::integers(&db.pool, sql).await.unwrap(), [2], "events record the current name");
}

/// A machine with database-assigned ids refuses a caller's key.
pub async fn generated_ids_refuse_caller_keys<B: TestBackend>(store: Store<Order, B>) {
    let error = store.insert_with_id(5, placed("ada", 1)).await.unwrap_err();
    assert!(matches!(error, Error::IdGenerated { machine: "Order" }), "{error}");
    let first = store.insert(placed("ada", 1)).await.unwrap();
    let second = store.insert(placed("bob", 1)).await.unwrap();
    assert!(second.id() > first.id());
}

/// A URL for another backend, or a malformed one, is an error naming the problem.
pub async fn bad_urls_are_named<B: TestBackend>() {
    let error = Store::<Order, B>::connect("http://localhost/orders").await.unwrap_err();
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(B::NAME) && message.contains("the scheme is `http:`"), "{message}");
    let error = Store::<Order, B>::connect("no scheme at all").await.unwrap_err();
    assert!(error.to_string().contains("the URL has no scheme"), "{error}");
    let malformed = match B::NAME {
        "SQLite" => "sqlite://orders.db?mode=sideways",
        "PostgreSQL" => "postgres://user@localhost:notaport/app",
        _ => "mysql://root@localhost:notaport/app",
    };
    let error = Store::<Order, B>::connect(malformed).await.unwrap_err();
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error}");
}

/// A fault before commit rolls the write back: nothing is written, and a retry succeeds.
pub async fn fault_before_commit_writes_nothing<B: TestBackend>(store: Store<Order, B>) {
    let order = store.insert(placed("ada", 4200)).await.unwrap();
    let faulty = store.clone().with_fate(Fate::new(1.0, 7).at(&[FaultPoint::BeforeCommit]));

    // When an insert and a transition fail before commit
    let error = faulty.insert(placed("bob", 1)).await.unwrap_err();
    assert!(matches!(error, Error::InjectedFault { point: FaultPoint::BeforeCommit }), "{error}");
    let error = faulty.apply(order.clone().transition(paid("pay_1"))).await.unwrap_err();
    assert!(error.to_string().contains("nothing was written"), "{error}");

    // Then nothing was written, and the same transition succeeds on retry
    assert_eq!(store.list(OrderStatus::Placed, Page::first(10)).await.unwrap().len(), 1);
    assert_eq!(version_and_events(&store, *order.id()).await, (1, 1));
    store.apply(order.clone().transition(paid("pay_1"))).await.unwrap();
    assert_eq!(faulty.fate().map(Fate::injected), Some(2));
    assert!(store.audit().await.unwrap().is_clean());
}

/// A fault after commit leaves the write durable: a blind retry conflicts,
/// a retry that reloads first succeeds.
pub async fn fault_after_commit_is_durable<B: TestBackend>(store: Store<Order, B>) {
    let order = store.insert(placed("ada", 4200)).await.unwrap();
    let faulty = store.clone().with_fate(Fate::new(1.0, 7).at(&[FaultPoint::AfterCommit]));

    // When a transition fails after its commit
    let error = faulty.apply(order.clone().transition(paid("pay_1"))).await.unwrap_err();
    assert!(matches!(error, Error::InjectedFault { point: FaultPoint::AfterCommit }), "{error}");
    assert!(error.to_string().contains("the write is durable"), "{error}");

    // Then the write is there, a blind retry conflicts, and loading shows the new state
    assert_eq!(version_and_events(&store, *order.id()).await, (2, 2));
    let retry = store.apply(order.clone().transition(paid("pay_1"))).await.unwrap_err();
    assert!(matches!(retry, Error::Conflict { actual_version: 2, .. }), "{retry}");
    let OrderState::Paid(paid) = store.load(order.id()).await.unwrap() else { panic!("paid") };

    // And the flow continues from the loaded state
    store.apply(paid.transition(OrderShipped { tracking: "t".into() })).await.unwrap();
    assert!(store.audit().await.unwrap().is_clean());
}

/// Drives one ticket to version 4 (open, closed, open, closed) through a
/// store that fails at random, retrying idempotently from what is stored.
async fn drive<B: TestBackend>(store: Store<Ticket, B>, id: Uuid) {
    let retryable = |e: &Error| matches!(e, Error::InjectedFault { .. } | Error::Conflict { .. });
    loop {
        match store.insert_with_id(id, TicketOpen { title: "chaos".into() }).await {
            // A duplicate means an earlier try committed before its fault.
            Ok(_) | Err(Error::Duplicate { .. }) => break,
            Err(e) if retryable(&e) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    loop {
        let result = match store.load(&id).await.unwrap() {
            TicketState::Open(r) if r.version() < 4 => store.apply(r.transition(close())).await.map(drop),
            TicketState::Closed(r) if r.version() < 4 => {
                store.apply(r.transition(TicketOpen { title: "reopened".into() })).await.map(drop)
            }
            _ => break,
        };
        if let Err(e) = result {
            assert!(retryable(&e), "unexpected error: {e}");
        }
    }
}

fn close() -> TicketClosed {
    TicketClosed { resolution: "done".into() }
}

/// Many writes with faults at both points and retries: no partial write
/// ever, every row equals the fold of its events.
pub async fn chaos_with_retries_leaves_no_partial_write<B: TestBackend>(store: Store<Ticket, B>) {
    let chaos = store.clone().with_fate(Fate::new(0.3, 2024));
    let ids: Vec<Uuid> = (0..24).map(|_| Uuid::new_v4()).collect();

    // When four workers drive six tickets each, through faults
    let workers: Vec<_> = ids
        .chunks(6)
        .map(|chunk| {
            let (chaos, chunk) = (chaos.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for id in chunk {
                    drive(chaos.clone(), id).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("the worker finishes");
    }

    // Then faults happened, and yet every ticket has exactly its four events
    assert!(chaos.fate().map_or(0, Fate::injected) > 10, "faults were injected");
    for id in &ids {
        let history = store.history(id).await.unwrap();
        let versions: Vec<i64> = history.iter().map(|e| e.version).collect();
        assert_eq!(versions, [1, 2, 3, 4]);
        assert!(matches!(store.load(id).await.unwrap(), TicketState::Closed(ref r) if r.version() == 4));
    }
    let report = store.audit().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!((report.records, report.events), (24, 96));
}
