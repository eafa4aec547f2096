use statefold::Machine;

mod upcasters {
    use serde_json::{json, Value};

    /// Version 1 stored the whole name.
    pub fn split_name(payload: Value) -> Result<Value, String> {
        let name = payload["name"].as_str().ok_or("no name")?;
        let (first, last) = name.split_once(' ').unwrap_or((name, ""));
        Ok(json!({ "first": first, "last": last }))
    }

    /// Version 2 had no title.
    pub fn add_title(mut payload: Value) -> Result<Value, std::fmt::Error> {
        payload["title"] = Value::Null;
        Ok(payload)
    }
}

/// A state whose events are at version 3, with a step from each earlier one.
#[derive(Machine, Clone, Debug, PartialEq)]
enum Member {
    #[initial]
    #[event(version = 3, upcast(2 => upcasters::add_title, 1 => upcasters::split_name))]
    Joined { first: String, last: String, title: Option<String> },
    #[from(Joined)]
    Left,
}

fn main() {
    assert_eq!(Member::DEF.states[0].version, 3);
    assert_eq!(Member::DEF.states[1].version, 1);
    let v1 = serde_json::json!({ "name": "Ada Lovelace" });
    let v2 = Member::upcast(MemberStatus::Joined, 1, v1).unwrap();
    let v3 = Member::upcast(MemberStatus::Joined, 2, v2).unwrap();
    let read = Member::decode(MemberStatus::Joined, &v3.to_string()).unwrap();
    assert_eq!(read, Member::Joined { first: "Ada".into(), last: "Lovelace".into(), title: None });
    let error = Member::upcast(MemberStatus::Joined, 1, serde_json::json!({})).unwrap_err();
    assert_eq!(error, "no name");
}
