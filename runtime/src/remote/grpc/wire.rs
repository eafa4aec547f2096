//! Events and positions to and from their protocol messages.

use super::generated as pb;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::machine::{Machine, Status};
use crate::schema::LogicalType;
use crate::stream::Position;
use crate::value::{Column, Value};
use chrono::{DateTime, Utc};

pub(super) fn position(position: Position) -> pb::Position {
    pb::Position { tx: position.tx(), id: position.id() }
}

pub(super) fn from_position(position: Option<pb::Position>) -> Position {
    position.map_or(Position::START, |p| Position::new(p.tx, p.id))
}

pub(super) fn nanos(at: DateTime<Utc>) -> i64 {
    // Out of range after 2262: the latest time that fits.
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub(super) fn time(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// An envelope as sent: the payload and metadata as JSON.
pub(super) fn event<M: Machine>(envelope: &Envelope<M>) -> Result<pb::Event, Error> {
    let encode = |source| Error::Encode { machine: M::DEF.name, source };
    let payload = envelope.event.encode().map_err(encode)?.payload;
    Ok(pb::Event {
        position: Some(position(envelope.position)),
        record_id: envelope.record_id.to_string(),
        kind: envelope.to.db_name().to_owned(),
        from: envelope.from.map(|from| from.db_name().to_owned()),
        version: envelope.version,
        created_at_unix_nanos: nanos(envelope.created_at),
        payload: serde_json::to_vec(&payload).map_err(encode)?,
        metadata: serde_json::to_vec(&envelope.metadata).map_err(encode)?,
        schema_version: envelope.schema_version,
    })
}

/// An envelope from the message received, typed by the same declaration
/// as the sender's: the payload comes in its state's current version
/// (upcast by the server when stored at an earlier one).
///
/// # Errors
/// [`Error::Decode`], naming the event's position, when it does not fit `M`.
pub(super) fn envelope<M: Machine>(event: pb::Event) -> Result<Envelope<M>, Error> {
    let machine = M::DEF.name;
    let position = from_position(event.position);
    let decode = |message: String| Error::Decode { machine, position, id: event.record_id.clone(), message };
    let status = |name: &str| {
        M::Status::from_db_name(name).ok_or_else(|| decode(format!("`{name}` is not a state of {machine}")))
    };
    let to = status(&event.kind)?;
    let from = event.from.as_deref().map(status).transpose()?;
    let payload = std::str::from_utf8(&event.payload).map_err(|e| decode(format!("payload: {e}")))?;
    let decoded = M::decode(to, payload).map_err(|e| decode(format!("payload: {e}")))?;
    let metadata = serde_json::from_slice(&event.metadata).map_err(|e| decode(format!("metadata: {e}")))?;
    let record_id = key::<M>(&event.record_id).map_err(|message| decode(format!("record id: {message}")))?;
    Ok(Envelope {
        position,
        record_id,
        event: decoded,
        schema_version: event.schema_version.max(1),
        from,
        to,
        version: event.version,
        created_at: time(event.created_at_unix_nanos),
        metadata,
    })
}

/// A record key from its text form, by the key's storage type.
fn key<M: Machine>(text: &str) -> Result<M::Id, String> {
    let value = match <M::Id as Column>::TYPE {
        LogicalType::I32 | LogicalType::I64 => Value::I64(text.parse().map_err(|e| format!("`{text}`: {e}"))?),
        LogicalType::Uuid => Value::Uuid(text.parse().map_err(|e| format!("`{text}`: {e}"))?),
        _ => Value::Text(text.to_owned()),
    };
    M::Id::from_value(value).map_err(|e| e.to_string())
}
