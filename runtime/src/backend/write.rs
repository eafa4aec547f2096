//! One write as the store hands it to a backend, and what the backend
//! reports back: the values to bind, in the order each statement binds them.

use super::Bind;
use crate::schema::LogicalType;
use crate::value::Value;

/// One insert or transition, as the store hands it to a backend.
#[doc(hidden)]
#[derive(Debug)]
pub struct Write {
    /// The entered state's index in `DEF.states` (selects the cached SQL).
    pub state: usize,
    /// The key: caller-supplied on insert (`None` when generated), always set on a transition.
    pub id: Option<Value>,
    /// The key's type.
    pub id_type: LogicalType,
    /// The entered state's stored name (the event's kind and `to_status`).
    pub status: Value,
    /// The status the record must have (a transition at a known state and
    /// version), or `None` (an insert, or a transition by id).
    pub from: Option<Value>,
    /// The names the record's status may be stored under (a transition at a
    /// known state): `from`'s, then its earlier ones, repeated up to the
    /// guard's count.
    pub from_names: Vec<Value>,
    /// The version the record must have (a transition at a known state).
    pub version: Value,
    /// A transition by id: the stored names (current and earlier) of every
    /// state the entered one may be entered from, each with its state's
    /// current name (what the event records as `from`). The row must be in
    /// one of them, at any version; the write itself finds which.
    pub sources: Option<Vec<(Value, Value)>>,
    /// The write's time, already at the precision every backend stores.
    pub at: Value,
    /// The entered state's columns in `StateDef::fields` order, with their types.
    pub columns: Vec<(Value, LogicalType)>,
    /// The event's JSON payload.
    pub payload: Value,
    /// The event's JSON metadata.
    pub metadata: Value,
    /// The version of the event's payload (its state's current version).
    pub schema_version: Value,
    /// The channel to notify at commit, when the store wakes other processes.
    pub notify: Option<Value>,
}

impl Write {
    /// Whether it inserts a record (rather than moving one).
    pub(crate) fn is_insert(&self) -> bool {
        self.from.is_none() && self.sources.is_none()
    }

    /// Binds of [`render::insert_record`](super::render::insert_record): `[id], status, at, at, columns`.
    pub(crate) fn record_binds(&self) -> Vec<Bind<'_>> {
        let mut binds = Vec::with_capacity(4 + self.columns.len());
        if let Some(id) = &self.id {
            binds.push((id, self.id_type));
        }
        binds.extend([
            (&self.status, LogicalType::Text),
            (&self.at, LogicalType::Timestamp),
            (&self.at, LogicalType::Timestamp),
        ]);
        binds.extend(self.columns.iter().map(|(v, ty)| (v, *ty)));
        binds
    }

    /// Binds of [`render::update_record`](super::render::update_record): `status, at, columns, id, from names, version`.
    pub(crate) fn update_binds(&self) -> Vec<Bind<'_>> {
        let mut binds = Vec::with_capacity(5 + self.columns.len());
        binds.extend([(&self.status, LogicalType::Text), (&self.at, LogicalType::Timestamp)]);
        binds.extend(self.columns.iter().map(|(v, ty)| (v, *ty)));
        binds.push((self.id.as_ref().unwrap_or(&Value::Null), self.id_type));
        binds.extend(self.from_names.iter().map(|name| (name, LogicalType::Text)));
        binds.push((&self.version, LogicalType::I64));
        binds
    }

    /// For the backends that read the row first: the same transition,
    /// guarded by the state and version a transition by id found the row in
    /// (`status`, as stored), if it is one of the sources; the guard binds
    /// `names` names.
    #[cfg(any(feature = "sqlite", feature = "mysql"))]
    pub(crate) fn found(&self, status: &Value, version: i64, names: usize) -> Option<Self> {
        let (_, current) = self.sources.as_ref()?.iter().find(|(stored, _)| stored == status)?;
        Some(Self {
            state: self.state,
            id: self.id.clone(),
            id_type: self.id_type,
            status: self.status.clone(),
            from: Some(current.clone()),
            from_names: vec![status.clone(); names],
            version: Value::I64(version),
            sources: None,
            at: self.at.clone(),
            columns: self.columns.clone(),
            payload: self.payload.clone(),
            metadata: self.metadata.clone(),
            schema_version: self.schema_version.clone(),
            notify: self.notify.clone(),
        })
    }

    /// Binds of a transition by id on PostgreSQL: `status, at, columns, id,
    /// source names, their current names, kind, to, payload, metadata, at, schema version`.
    #[cfg(feature = "postgres")]
    pub(crate) fn by_id_binds(&self) -> Vec<Bind<'_>> {
        let mut binds = Vec::with_capacity(10 + self.columns.len());
        binds.extend([(&self.status, LogicalType::Text), (&self.at, LogicalType::Timestamp)]);
        binds.extend(self.columns.iter().map(|(v, ty)| (v, *ty)));
        binds.push((self.id.as_ref().unwrap_or(&Value::Null), self.id_type));
        binds.extend(self.sources.iter().flatten().map(|(stored, _)| (stored, LogicalType::Text)));
        binds.extend(self.sources.iter().flatten().map(|(_, current)| (current, LogicalType::Text)));
        binds.extend([
            (&self.status, LogicalType::Text),
            (&self.status, LogicalType::Text),
            (&self.payload, LogicalType::Json),
            (&self.metadata, LogicalType::Json),
            (&self.at, LogicalType::Timestamp),
            (&self.schema_version, LogicalType::I64),
        ]);
        binds
    }

    /// Binds of [`render::insert_event_select`](super::render::insert_event_select):
    /// `kind, from, to, payload, metadata, at, schema version`.
    pub(crate) fn event_select_binds(&self) -> [Bind<'_>; 7] {
        [
            (&self.status, LogicalType::Text),
            (self.from.as_ref().unwrap_or(&Value::Null), LogicalType::Text),
            (&self.status, LogicalType::Text),
            (&self.payload, LogicalType::Json),
            (&self.metadata, LogicalType::Json),
            (&self.at, LogicalType::Timestamp),
            (&self.schema_version, LogicalType::I64),
        ]
    }

    /// Binds of [`render::insert_event_values`](super::render::insert_event_values):
    /// `record_id, kind, from, to, version, payload, metadata, at, schema version`.
    #[cfg(any(feature = "sqlite", feature = "mysql"))]
    pub(crate) fn event_values_binds<'a>(&'a self, record_id: &'a Value, version: &'a Value) -> [Bind<'a>; 9] {
        let [kind, from, to, payload, metadata, at, schema] = self.event_select_binds();
        [(record_id, self.id_type), kind, from, to, (version, LogicalType::I64), payload, metadata, at, schema]
    }
}

/// What a backend's write produced.
#[doc(hidden)]
#[derive(Debug)]
pub struct Written {
    /// The record's key.
    pub id: Value,
    /// The whole row after a transition (an insert's row is known without reading it).
    pub row: Option<Vec<Value>>,
    /// The event's position.
    pub position: i64,
}
