//! Rows and events from the values read back from the database.

use super::Store;
use crate::backend::log::Log;
use crate::backend::Backend;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::fold;
use crate::machine::{Machine, Row, RowHeader, Status};
use crate::value::{Column, Value};

impl<M: Machine, B: Backend> Store<M, B> {
    /// A row from its values as read (header first).
    pub(crate) fn row(&self, values: Vec<Value>) -> Result<M::Row, Error> {
        let def = M::DEF;
        let mut values = values.into_iter();
        let id = values.next().unwrap_or(Value::Null);
        let id_text = fold::id_text(&id);
        let corrupt = |message: String| Error::CorruptRow { machine: def.name, id: id_text.clone(), message };
        let id = M::Id::from_value(id).map_err(|e| corrupt(format!("column `id`: {e}")))?;
        let status = match values.next() {
            Some(Value::Text(name)) => M::Status::from_db_name(&name)
                .ok_or_else(|| corrupt(format!("column `status`: `{name}` is not a state of {}", def.name)))?,
            _ => return Err(corrupt("column `status` is empty".into())),
        };
        let version = match values.next() {
            Some(Value::I64(version)) => version,
            _ => return Err(corrupt("column `version` is empty".into())),
        };
        let mut time = |column: &str| match values.next() {
            Some(Value::Timestamp(at)) => Ok(at),
            _ => Err(corrupt(format!("column `{column}` is empty"))),
        };
        let (created_at, updated_at) = (time("created_at")?, time("updated_at")?);
        let header = RowHeader { id, status, version, created_at, updated_at };
        M::Row::from_parts(header, values.collect()).map_err(|e| corrupt(e.to_string()))
    }

    /// An event from a log row as read ([`Log::columns`]).
    pub(crate) fn event(&self, values: Vec<Value>) -> Result<Envelope<M>, Error> {
        let machine = M::DEF.name;
        let (position, values) = B::Log::split(values);
        let mut values = values.into_iter();
        let mut next = || values.next().unwrap_or(Value::Null);
        let (_, record_id, kind, from, to, version, payload, metadata, created_at, schema_version) =
            (next(), next(), next(), next(), next(), next(), next(), next(), next(), next());
        let decode = |message: String| Error::Decode { machine, position, id: fold::id_text(&record_id), message };
        let status = |value: Value| match value {
            Value::Text(name) => {
                M::Status::from_db_name(&name).ok_or_else(|| decode(format!("`{name}` is not a state of {machine}")))
            }
            _ => Err(decode("a status is empty".into())),
        };
        let (kind, to) = (status(kind)?, status(to)?);
        let from = match from {
            Value::Null => None,
            other => Some(status(other)?),
        };
        // The JSON columns are read as text: decoded once, straight into their types.
        fn json(value: &Value) -> &str {
            match value {
                Value::Text(text) => text,
                _ => "null",
            }
        }
        let schema_version = match schema_version {
            Value::I64(v) => u32::try_from(v).ok().filter(|&v| v >= 1),
            Value::Null => Some(1),
            _ => None,
        }
        .ok_or_else(|| decode("its `schema_version` is not a version".into()))?;
        let current = kind.def().version;
        if schema_version > current {
            return Err(Error::NewerEvent {
                machine,
                position,
                id: fold::id_text(&record_id),
                state: kind.name(),
                version: schema_version,
                current,
            });
        }
        let event = if schema_version == current {
            M::decode(kind, json(&payload)).map_err(|e| decode(format!("payload: {e}")))?
        } else {
            let mut value: serde_json::Value =
                serde_json::from_str(json(&payload)).map_err(|e| decode(format!("payload: {e}")))?;
            for from in schema_version..current {
                value = M::upcast(kind, from, value).map_err(|e| {
                    decode(format!("upcasting {} from version {from} to {}: {e}", kind.name(), from + 1))
                })?;
            }
            M::decode(kind, &value.to_string())
                .map_err(|e| decode(format!("payload upcast from version {schema_version}: {e}")))?
        };
        let metadata = serde_json::from_str(json(&metadata)).map_err(|e| decode(format!("metadata: {e}")))?;
        let (Value::I64(version), Value::Timestamp(created_at)) = (version, created_at) else {
            return Err(decode("version or time is empty".into()));
        };
        let record_id = M::Id::from_value(record_id.clone()).map_err(|e| decode(format!("record id: {e}")))?;
        Ok(Envelope { position, record_id, event, schema_version, from, to, version, created_at, metadata })
    }
}
