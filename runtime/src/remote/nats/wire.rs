//! A relayed event on the wire: JSON of the envelope, with its position
//! also in a header so that a consumer can skip it without decoding it.

use super::POSITION;
use crate::envelope::Envelope;
use crate::machine::{Machine, Metadata, Status};
use crate::schema::LogicalType;
use crate::stream::Position;
use crate::value::{Column, Value};
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};

/// The body of a relayed event.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    position: Position,
    record_id: serde_json::Value,
    kind: String,
    #[serde(default)]
    from: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    payload: serde_json::Value,
    /// The version of the state's payload shape it was encoded at.
    #[serde(default = "first_version")]
    schema_version: u32,
    #[serde(default)]
    metadata: Metadata,
}

fn first_version() -> u32 {
    1
}

/// The body of `envelope`.
pub(crate) fn encode<M: Machine>(envelope: &Envelope<M>) -> Result<Vec<u8>, serde_json::Error> {
    let record_id = match envelope.record_id.to_value() {
        Value::I32(n) => n.into(),
        Value::I64(n) => n.into(),
        _ => envelope.record_id.to_string().into(),
    };
    let wire = Wire {
        position: envelope.position,
        record_id,
        kind: envelope.to.db_name().to_owned(),
        from: envelope.from.map(|from| from.db_name().to_owned()),
        version: envelope.version,
        created_at: envelope.created_at,
        payload: envelope.event.encode()?.payload,
        // Encoded from the event in its state's current shape.
        schema_version: envelope.to.def().version,
        metadata: envelope.metadata.clone(),
    };
    serde_json::to_vec(&wire)
}

/// The position a message's header gives, or why there is none.
pub(crate) fn position(headers: Option<&HeaderMap>) -> Result<Position, String> {
    let value = headers.and_then(|h| h.get(POSITION)).ok_or_else(|| format!("no `{POSITION}` header"))?;
    let text: &str = value.as_ref();
    text.parse().map_err(|e| format!("header `{POSITION}`: {e}"))
}

/// The event a message carries, or why it is not one.
pub(crate) fn decode<M: Machine>(headers: Option<&HeaderMap>, body: &[u8]) -> Result<Envelope<M>, String> {
    let position = position(headers)?;
    let wire: Wire = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    if wire.position != position {
        return Err(format!("header `{POSITION}` says {position}, the body {}", wire.position));
    }
    let status =
        |name: &str| M::Status::from_db_name(name).ok_or_else(|| format!("`{name}` is no state of the machine"));
    let to = status(&wire.kind)?;
    let from = wire.from.as_deref().map(status).transpose()?;
    let id = match (<M::Id as Column>::TYPE, &wire.record_id) {
        (LogicalType::I32 | LogicalType::I64, serde_json::Value::Number(n)) => n.as_i64().map(Value::I64),
        (LogicalType::Text, serde_json::Value::String(s)) => Some(Value::Text(s.clone())),
        (LogicalType::Uuid, serde_json::Value::String(s)) => s.parse().ok().map(Value::Uuid),
        _ => None,
    }
    .ok_or_else(|| format!("record id {} is not a key of the machine", wire.record_id))?;
    let record_id = M::Id::from_value(id).map_err(|e| format!("record id: {e}"))?;
    let current = to.def().version;
    if wire.schema_version > current {
        return Err(format!(
            "`{}` at version {}, newer than this build's {current}: deploy the new declaration here first",
            wire.kind, wire.schema_version
        ));
    }
    let mut payload = wire.payload;
    for from in wire.schema_version.max(1)..current {
        payload =
            M::upcast(to, from, payload).map_err(|e| format!("upcasting `{}` from version {from}: {e}", wire.kind))?;
    }
    let event = M::decode(to, &payload.to_string()).map_err(|e| format!("payload of `{}`: {e}", wire.kind))?;
    Ok(Envelope {
        position,
        record_id,
        event,
        schema_version: wire.schema_version,
        from,
        to,
        version: wire.version,
        created_at: wire.created_at,
        metadata: wire.metadata,
    })
}
