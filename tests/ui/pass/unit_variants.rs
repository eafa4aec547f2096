use statefold::{Event, Machine};

/// A light switch.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Switch {
    #[initial]
    #[from(On)]
    Off,
    #[from(Off)]
    On,
}

fn main() {
    assert!(Switch::DEF.columns.is_empty());
    let encoded = SwitchOn.encode().unwrap();
    assert_eq!(encoded.payload, serde_json::json!({}));
    assert!(encoded.columns.is_empty());
    let on: Switch = SwitchOn.into();
    assert_eq!(on, Switch::On);
    assert_eq!(Switch::decode(SwitchStatus::Off, "{}").unwrap(), Switch::Off);
}
