//! The generated description, diagrams and conversions of one machine,
//! checked item by item. Clippy's pedantic lints run over this file in CI,
//! so generated code must pass them too.
#![warn(clippy::pedantic)]

use statefold::{Edge, Event, LogicalType, Machine, Metadata, Row, RowHeader, Status, Value};

/// An order's life.
#[derive(Machine, Clone, Debug, PartialEq)]
#[machine(table = "orders")]
enum Order {
    /// The customer placed the order.
    #[initial]
    Placed {
        #[column(index)]
        customer: String,
        amount_cents: i64,
    },
    /// Paid by card.
    #[from(Placed)]
    Paid { payment_ref: String, paid_at: Option<chrono::DateTime<chrono::Utc>> },
    #[from(Paid)]
    Shipped { tracking: String },
    #[from(Placed, Paid)]
    #[state(name = "cancelled_by_customer")]
    Cancelled { reason: String },
    #[from(Shipped)]
    Delivered,
}

#[test]
fn description_lists_tables_states_edges_and_columns() {
    let def = Order::DEF;
    assert_eq!(def.name, "Order");
    assert_eq!(def.doc, "An order's life.");
    assert_eq!((def.table, def.events_table), ("orders", "order_events"));
    assert_eq!((def.id.ty, def.id.generated), (LogicalType::I64, true));

    let states: Vec<(&str, &str, bool)> = def.states.iter().map(|s| (s.name, s.db_name, s.initial)).collect();
    assert_eq!(
        states,
        [
            ("Placed", "placed", true),
            ("Paid", "paid", false),
            ("Shipped", "shipped", false),
            ("Cancelled", "cancelled_by_customer", false),
            ("Delivered", "delivered", false),
        ]
    );
    assert_eq!(def.state("Placed").unwrap().doc, "The customer placed the order.");
    assert_eq!(def.state("Paid").unwrap().fields, ["payment_ref", "paid_at"]);

    let edge = |from, to| Edge { from, to };
    assert_eq!(
        def.edges,
        [
            edge("Placed", "Paid"),
            edge("Paid", "Shipped"),
            edge("Placed", "Cancelled"),
            edge("Paid", "Cancelled"),
            edge("Shipped", "Delivered"),
        ]
    );
    assert_eq!(def.sources_of("Cancelled").collect::<Vec<_>>(), ["Placed", "Paid"]);

    // (name, type, nullable, indexed)
    let columns: Vec<_> = def.columns.iter().map(|c| (c.name, c.ty, c.nullable, c.indexed)).collect();
    assert_eq!(
        columns,
        [
            ("customer", LogicalType::Text, false, true),
            ("amount_cents", LogicalType::I64, false, false),
            ("payment_ref", LogicalType::Text, true, false),
            ("paid_at", LogicalType::Timestamp, true, false),
            ("tracking", LogicalType::Text, true, false),
            ("reason", LogicalType::Text, true, false),
        ]
    );
}

#[test]
fn diagrams_render_the_graph() {
    assert_eq!(
        Order::DEF.mermaid,
        "stateDiagram-v2
    [*] --> Placed
    Placed --> Paid
    Paid --> Shipped
    Placed --> Cancelled
    Paid --> Cancelled
    Shipped --> Delivered
    Cancelled --> [*]
    Delivered --> [*]
"
    );
    assert_eq!(
        Order::DEF.dot,
        r#"digraph Order {
    rankdir=LR;
    node [shape=box, style=rounded];
    __start [shape=point, label=""];
    Cancelled [peripheries=2];
    Delivered [peripheries=2];
    __start -> Placed;
    Placed -> Paid;
    Paid -> Shipped;
    Placed -> Cancelled;
    Paid -> Cancelled;
    Shipped -> Delivered;
}
"#
    );
}

#[test]
fn status_names_round_trip() {
    for status in OrderStatus::ALL {
        assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
        assert_eq!(OrderStatus::from_db_name(status.db_name()), Some(status));
        assert_eq!(Order::DEF.states[status.index()].name, status.name());
        assert_eq!(status.to_string().parse::<OrderStatus>(), Ok(status));
    }
    // `Display` is for people: the variant's name, as errors say it.
    assert_eq!(OrderStatus::Cancelled.to_string(), "Cancelled");
    assert_eq!(OrderStatus::Cancelled.as_str(), "cancelled_by_customer");
    assert!("cancelled".parse::<OrderStatus>().is_err());
}

#[test]
fn events_convert_encode_and_decode() {
    let paid = OrderPaid { payment_ref: "pi_1".into(), paid_at: None };
    let encoded = paid.encode().unwrap();
    assert_eq!(encoded.payload, serde_json::json!({ "payment_ref": "pi_1", "paid_at": null }));
    assert_eq!(encoded.columns, [("payment_ref", Value::Text("pi_1".into())), ("paid_at", Value::Null)]);
    assert_eq!(<OrderPaid as Event>::STATUS, OrderStatus::Paid);

    let order: Order = paid.into();
    assert_eq!(order.status(), OrderStatus::Paid);
    assert_eq!(order.encode().unwrap(), encoded, "the enum and the event struct encode alike");
    assert_eq!(Order::decode(OrderStatus::Paid, &encoded.payload.to_string()).unwrap(), order);
    assert!(Order::decode(OrderStatus::Shipped, r#"{ "tracking": 7 }"#).is_err());
    assert_eq!(Order::decode(OrderStatus::Delivered, "{}").unwrap(), Order::Delivered);
}

#[test]
fn rows_rebuild_and_match_into_typed_handles() {
    let now = chrono::Utc::now();
    let header = RowHeader::<Order> { id: 7, status: OrderStatus::Paid, version: 2, created_at: now, updated_at: now };
    let columns = vec![
        Value::Text("ada".into()),
        Value::I64(1200),
        Value::Text("pi_1".into()),
        Value::Null,
        Value::Null,
        Value::Null,
    ];
    let row = OrderRow::from_parts(header.clone(), columns.clone()).unwrap();
    assert_eq!((row.id, row.amount_cents, row.payment_ref.as_deref()), (7, 1200, Some("pi_1")));
    assert_eq!(row.columns().unwrap(), columns);

    let mut wrong = columns;
    wrong[1] = Value::Text("twelve".into());
    let err = OrderRow::from_parts(header, wrong).unwrap_err();
    assert_eq!(err.to_string(), "column `amount_cents`: expected i64, found text");

    let OrderState::Paid(paid) = Order::into_state(row) else {
        panic!("a paid row loads as a paid handle");
    };
    let shipping = paid.transition(OrderShipped { tracking: "1Z".into() }).with_metadata(Metadata::new().actor("ops"));
    assert_eq!((shipping.id, shipping.from, shipping.version), (7, OrderStatus::Paid, 2));
    assert_eq!(shipping.metadata.actor.as_deref(), Some("ops"));
}
