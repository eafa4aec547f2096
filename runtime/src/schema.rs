//! The `const` description of a machine, produced by the derive.
//!
//! Everything the runtime knows about a machine's shape comes from here:
//! DDL is rendered per dialect from a [`MachineDef`], transitions are checked
//! against its edges at run time, and the diagrams are part of it. The macro
//! writes no SQL.

/// The storage type of a column, independent of any SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogicalType {
    /// `bool`.
    Bool,
    /// `i8`, `i16`, `i32`, `u8`, `u16`.
    I32,
    /// `i64`, `u32`.
    I64,
    /// `f32`, `f64`.
    F64,
    /// `String`.
    Text,
    /// `Vec<u8>`.
    Bytes,
    /// `chrono::DateTime<Utc>`.
    Timestamp,
    /// `uuid::Uuid`.
    Uuid,
    /// Any serde type in a `#[column(json)]` field.
    Json,
}

impl LogicalType {
    /// A short lowercase name, as shown in descriptions and errors.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::F64 => "f64",
            Self::Text => "text",
            Self::Bytes => "bytes",
            Self::Timestamp => "timestamp",
            Self::Uuid => "uuid",
            Self::Json => "json",
        }
    }
}

impl std::fmt::Display for LogicalType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A whole machine: its tables, states, edges and columns.
///
/// Built by `#[derive(Machine)]` as `<M as Machine>::DEF`.
///
/// ```
/// # use statefold::Machine;
/// #[derive(Machine)]
/// #[machine(table = "lamps")]
/// enum Lamp {
///     #[initial]
///     #[from(On)]
///     Off,
///     #[from(Off)]
///     On { watts: i32 },
/// }
///
/// let def = Lamp::DEF;
/// assert_eq!(def.table, "lamps");
/// assert_eq!(def.events_table, "lamp_events");
/// assert!(def.can_transition("Off", "On"));
/// assert!(!def.can_transition("On", "On"));
/// assert!(def.column("watts").unwrap().nullable);
/// ```
///
/// Built only by the derive, so it can gain fields without breaking anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MachineDef {
    /// The enum's name, e.g. `Order`.
    pub name: &'static str,
    /// The enum's doc comment, trimmed.
    pub doc: &'static str,
    /// The records table (one mutable row per record).
    pub table: &'static str,
    /// The events table (one immutable row per event).
    pub events_table: &'static str,
    /// How records are keyed.
    pub id: IdDef,
    /// Every state, in declaration order.
    pub states: &'static [StateDef],
    /// Every declared edge, grouped by target in declaration order.
    pub edges: &'static [Edge],
    /// Every payload column of the records table, in first-declared order.
    pub columns: &'static [ColumnDef],
    /// The graph as a Mermaid `stateDiagram-v2`.
    pub mermaid: &'static str,
    /// The graph as a Graphviz `digraph`.
    pub dot: &'static str,
}

/// How a machine's records are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdDef {
    /// The key's storage type.
    pub ty: LogicalType,
    /// `true` when the database assigns keys (the default `i64` id);
    /// `false` when callers supply them (`#[machine(id = uuid::Uuid)]`).
    pub generated: bool,
}

impl IdDef {
    /// Used by the derive; not public API.
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(ty: LogicalType, generated: bool) -> Self {
        Self { ty, generated }
    }
}

/// One state, which is also the event that enters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateDef {
    /// The variant's name, e.g. `Paid`.
    pub name: &'static str,
    /// The stable name stored in the `status` column, e.g. `paid`.
    pub db_name: &'static str,
    /// Earlier database names of this state, from `#[state(was = "..")]`.
    pub was: &'static [&'static str],
    /// Whether records may be inserted in this state (`#[initial]`).
    pub initial: bool,
    /// The variant's doc comment, trimmed.
    pub doc: &'static str,
    /// The columns this state's event sets, in declaration order.
    pub fields: &'static [&'static str],
    /// The event's payload as stored: one entry per field, in declaration order.
    pub payload: &'static [FieldDef],
    /// The event's current version (`#[event(version = N)]`, else 1): the
    /// version new events are stored at. Events stored at an earlier one
    /// are upcast when read.
    pub version: u32,
}

impl StateDef {
    /// Used by the derive; not public API.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub const fn __new(
        name: &'static str,
        db_name: &'static str,
        was: &'static [&'static str],
        initial: bool,
        doc: &'static str,
        fields: &'static [&'static str],
        payload: &'static [FieldDef],
        version: u32,
    ) -> Self {
        Self { name, db_name, was, initial, doc, fields, payload, version }
    }
}

/// One field of an event's JSON payload, as stored events hold it.
///
/// The migration snapshot keeps these, so that a change that would leave
/// stored events undecodable is refused before it ships.
///
/// ```
/// # use statefold::Machine;
/// #[derive(Machine)]
/// enum Lamp {
///     #[initial]
///     #[serde(rename_all = "camelCase")]
///     On {
///         max_watts: i32,
///         #[serde(default)]
///         label: String,
///         note: Option<String>,
///     },
/// }
///
/// let [watts, label, note] = Lamp::DEF.states[0].payload else { panic!() };
/// assert_eq!((watts.name, watts.json, watts.ty), ("max_watts", "maxWatts", "i32"));
/// assert!(!watts.optional && !watts.default);
/// assert!(label.default);
/// assert!(note.optional && note.ty == "String");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldDef {
    /// The field's (and its column's) name.
    pub name: &'static str,
    /// Its name in the payload (`#[serde(rename = "..")]`, `rename_all`).
    pub json: &'static str,
    /// Further payload names it is read under (`#[serde(alias = "..")]`).
    pub aliases: &'static [&'static str],
    /// Its Rust type as written, without paths and without `Option`.
    pub ty: &'static str,
    /// Its storage type.
    pub logical: LogicalType,
    /// Whether its type is an `Option` (a payload without it reads `None`).
    pub optional: bool,
    /// Whether it has `#[serde(default)]` (a payload without it still decodes).
    pub default: bool,
}

impl FieldDef {
    /// Used by the derive; not public API.
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(
        name: &'static str,
        json: &'static str,
        aliases: &'static [&'static str],
        ty: &'static str,
        logical: LogicalType,
        optional: bool,
        default: bool,
    ) -> Self {
        Self { name, json, aliases, ty, logical, optional, default }
    }

    /// Whether a payload written without this field still decodes.
    pub const fn may_be_missing(&self) -> bool {
        self.optional || self.default
    }

    /// Whether `name` reads this field.
    pub fn reads(&self, name: &str) -> bool {
        self.json == name || self.aliases.contains(&name)
    }
}

/// A declared transition between two states, by variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The source state's variant name.
    pub from: &'static str,
    /// The target state's variant name.
    pub to: &'static str,
}

/// A payload column of the records table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ColumnDef {
    /// The column (and field) name.
    pub name: &'static str,
    /// Its storage type.
    pub ty: LogicalType,
    /// `false` only when every initial state sets it with a non-optional type.
    pub nullable: bool,
    /// Whether the records table has an index on it (`#[column(index)]`).
    pub indexed: bool,
}

impl ColumnDef {
    /// Used by the derive; not public API.
    #[doc(hidden)]
    #[must_use]
    pub const fn __new(name: &'static str, ty: LogicalType, nullable: bool, indexed: bool) -> Self {
        Self { name, ty, nullable, indexed }
    }
}

/// The columns every records table has before the payload columns.
pub const RESERVED_COLUMNS: [&str; 5] = ["id", "status", "version", "created_at", "updated_at"];

impl MachineDef {
    /// Used by the derive, which is pinned to this crate's version; not public API.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub const fn __new(
        name: &'static str,
        doc: &'static str,
        table: &'static str,
        events_table: &'static str,
        id: IdDef,
        states: &'static [StateDef],
        edges: &'static [Edge],
        columns: &'static [ColumnDef],
        mermaid: &'static str,
        dot: &'static str,
    ) -> Self {
        Self { name, doc, table, events_table, id, states, edges, columns, mermaid, dot }
    }

    /// The state with this variant name.
    pub fn state(&self, name: &str) -> Option<&'static StateDef> {
        self.states.iter().find(|s| s.name == name)
    }

    /// The state stored under this database name (current or earlier).
    pub fn state_by_db_name(&self, db_name: &str) -> Option<&'static StateDef> {
        self.states
            .iter()
            .find(|s| s.db_name == db_name)
            .or_else(|| self.states.iter().find(|s| s.was.contains(&db_name)))
    }

    /// The states records may be inserted in.
    pub fn initial_states(&self) -> impl Iterator<Item = &'static StateDef> {
        self.states.iter().filter(|s| s.initial)
    }

    /// The states `to` may be entered from, in declaration order.
    pub fn sources_of<'a>(&'a self, to: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        self.edges.iter().filter(move |e| e.to == to).map(|e| e.from)
    }

    /// Whether the edge `from -> to` is declared (variant names).
    pub fn can_transition(&self, from: &str, to: &str) -> bool {
        self.edges.iter().any(|e| e.from == from && e.to == to)
    }

    /// The payload column with this name.
    pub fn column(&self, name: &str) -> Option<&'static ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The index of a payload column in [`MachineDef::columns`].
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}
