use serde::Serialize;
use statefold::{Event, Machine, Value};

fn unknown() -> String {
    "unknown".to_owned()
}

/// `#[serde(..)]` on states and fields reaches the event structs: payload
/// names, aliases for earlier names, defaults for events stored without a field.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Order {
    #[initial]
    #[serde(rename_all = "camelCase")]
    Placed {
        customer_name: String,
        #[serde(rename = "total", alias = "amount")]
        amount_cents: i64,
        #[serde(default = "unknown")]
        channel: String,
        #[serde(default)]
        gift: bool,
    },
}

/// A serde derive of the enum itself keeps its own container attributes:
/// they do not reach the event structs.
#[derive(Machine, Serialize, Clone, Debug)]
#[serde(tag = "type")]
enum Lamp {
    #[initial]
    On { watts: i32 },
}

fn main() {
    let event = OrderPlaced { customer_name: "ada".into(), amount_cents: 5, channel: "web".into(), gift: true };
    let encoded = event.encode().unwrap();
    let payload = serde_json::json!({ "customerName": "ada", "total": 5, "channel": "web", "gift": true });
    assert_eq!(encoded.payload, payload);
    assert_eq!(encoded.columns[0], ("customer_name", Value::Text("ada".into())));
    assert_eq!(serde_json::to_value(&event).unwrap(), payload);

    let old = r#"{ "customerName": "bob", "amount": 7 }"#;
    let read = Order::decode(OrderStatus::Placed, old).unwrap();
    let expected = Order::Placed { customer_name: "bob".into(), amount_cents: 7, channel: "unknown".into(), gift: false };
    assert_eq!(read, expected);

    let [name, total, channel, gift] = Order::DEF.states[0].payload else { panic!() };
    assert_eq!((name.json, total.json, total.aliases), ("customerName", "total", &["amount"][..]));
    assert!(channel.default && gift.default && !name.default);

    assert_eq!(serde_json::to_value(Lamp::On { watts: 3 }).unwrap(), serde_json::json!({ "type": "On", "watts": 3 }));
    assert_eq!(serde_json::to_value(LampOn { watts: 3 }).unwrap(), serde_json::json!({ "watts": 3 }));
}
