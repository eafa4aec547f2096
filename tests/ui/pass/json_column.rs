use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statefold::{Event, LogicalType, Machine, Value};

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
}

/// A basket whose lines are stored as JSON.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Basket {
    #[initial]
    Filled {
        #[column(json)]
        lines: Vec<Line>,
        #[column(json)]
        tags: BTreeMap<String, String>,
        #[column(json)]
        note: Option<Line>,
    },
    #[from(Filled)]
    CheckedOut,
}

fn main() {
    let def = Basket::DEF;
    assert_eq!(def.column("lines").unwrap().ty, LogicalType::Json);
    assert!(!def.column("lines").unwrap().nullable);
    assert!(def.column("note").unwrap().nullable);
    let event = BasketFilled {
        lines: vec![Line { sku: "tea".into(), quantity: 2 }],
        tags: BTreeMap::new(),
        note: None,
    };
    let encoded = event.encode().unwrap();
    assert_eq!(encoded.columns[0].1, Value::Json(serde_json::json!([{ "sku": "tea", "quantity": 2 }])));
    assert_eq!(encoded.columns[2].1, Value::Null);
    let back = Basket::decode(BasketStatus::Filled, &encoded.payload.to_string()).unwrap();
    assert_eq!(back, Basket::from(event));
}
