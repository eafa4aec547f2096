//! Events a consumer gave up on, in `statefold_dead_letters`.

use super::super::position::Position;
use super::cursor::now;
use crate::backend::render::{list, Params, DEAD_LETTERS};
use crate::backend::{Backend, Conn};
use crate::error::Error;
use crate::machine::Machine;
use crate::schema::LogicalType;
use crate::store::Store;
use crate::value::Value;

/// An event a consumer gave up on, and why.
pub(super) struct DeadLetter {
    pub(super) position: Position,
    pub(super) record_id: String,
    pub(super) kind: &'static str,
    pub(super) payload: serde_json::Value,
    pub(super) metadata: serde_json::Value,
    pub(super) error: String,
    pub(super) attempts: u32,
}

const COLUMNS: [&str; 11] = [
    "stream",
    "consumer",
    "tx",
    "position",
    "record_id",
    "kind",
    "payload",
    "metadata",
    "error",
    "attempts",
    "created_at",
];

/// Records one consumer's dead letters.
pub(super) struct DeadLetters<M: Machine, B: Backend> {
    store: Store<M, B>,
    insert: String,
    stream: Value,
    consumer: Value,
}

impl<M: Machine, B: Backend> DeadLetters<M, B> {
    pub(super) fn new(store: Store<M, B>, consumer: &str) -> Self {
        let mut p = Params::<B>::new();
        let values: Vec<String> = COLUMNS.iter().map(|_| p.next()).collect();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            B::quote_ident(DEAD_LETTERS),
            list::<B>(COLUMNS),
            values.join(", ")
        );
        Self {
            store,
            insert,
            stream: Value::Text(M::DEF.events_table.to_owned()),
            consumer: Value::Text(consumer.to_owned()),
        }
    }

    /// Records a dead letter in `conn`'s transaction.
    pub(super) async fn record(&self, conn: &mut Conn<B>, letter: DeadLetter) -> Result<(), Error> {
        let DeadLetter { position, record_id, kind, payload, metadata, error, attempts } = letter;
        let values = [
            (Value::I64(position.tx()), LogicalType::I64),
            (Value::I64(position.id()), LogicalType::I64),
            (Value::Text(record_id), LogicalType::Text),
            (Value::Text(kind.to_owned()), LogicalType::Text),
            (Value::Json(payload), LogicalType::Json),
            (Value::Json(metadata), LogicalType::Json),
            (Value::Text(error), LogicalType::Text),
            (Value::I64(i64::from(attempts)), LogicalType::I64),
            (now(), LogicalType::Timestamp),
        ];
        let mut binds = vec![(&self.stream, LogicalType::Text), (&self.consumer, LogicalType::Text)];
        binds.extend(values.iter().map(|(v, ty)| (v, *ty)));
        B::execute_with(conn, &self.insert, &binds).await.map_err(|e| self.store.failure(e, None))?;
        Ok(())
    }
}
