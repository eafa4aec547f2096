//! The schema a migration directory has reached, stored beside its files.

use crate::schema::{FieldDef, LogicalType, MachineDef};
use serde::{Deserialize, Serialize};

/// The file name of the snapshot inside a dialect's migration directory.
/// sqlx ignores it: it is not named `<version>_<description>.sql`.
pub const SNAPSHOT_FILE: &str = "statefold.snapshot.json";

/// The schema of every machine as the migrations so far have made it.
///
/// Written by `generate` after each migration; compared with the code's
/// machines to write the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The snapshot format, for later evolution of this file.
    pub format: u32,
    /// The version of the last migration written.
    pub version: i64,
    /// The version of the shared tables (consumer cursors, leases, dead
    /// letters) the migrations create; 0 before they exist.
    #[serde(default)]
    pub support: u32,
    /// One entry per machine, in registration order.
    pub machines: Vec<MachineSnapshot>,
}

/// One machine's tables as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSnapshot {
    /// The enum's name.
    pub name: String,
    /// The records table.
    pub table: String,
    /// The events table.
    pub events_table: String,
    /// The key's storage type.
    pub id: LogicalType,
    /// Whether the database assigns keys.
    pub id_generated: bool,
    /// The stored names of the states, current and earlier, that `status` admits.
    pub statuses: Vec<String>,
    /// The payload columns.
    pub columns: Vec<ColumnSnapshot>,
    /// Each state's event payload, as stored events hold it. Empty in
    /// snapshots of format 1, which did not record them, and whose events
    /// tables have no `schema_version` column yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventSnapshot>,
}

/// One state's event payload as stored events hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSnapshot {
    /// The state's stored name.
    pub state: String,
    /// The event's version.
    pub version: u32,
    /// The payload's fields, in declaration order.
    pub fields: Vec<FieldSnapshot>,
}

/// One field of an event's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSnapshot {
    /// The field's (and column's) name.
    pub name: String,
    /// Its name in the payload.
    pub json: String,
    /// Further payload names it is read under.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Its Rust type as written, without paths and without `Option`.
    pub ty: String,
    /// Its storage type.
    pub logical: LogicalType,
    /// Whether its type is an `Option`.
    pub optional: bool,
    /// Whether it has `#[serde(default)]`.
    pub default: bool,
}

impl FieldSnapshot {
    /// The snapshot of a field as declared.
    pub fn of(field: &FieldDef) -> Self {
        Self {
            name: field.name.to_owned(),
            json: field.json.to_owned(),
            aliases: field.aliases.iter().map(|&a| a.to_owned()).collect(),
            ty: field.ty.to_owned(),
            logical: field.logical,
            optional: field.optional,
            default: field.default,
        }
    }

    /// Its type as people write it: `Option<T>` or `T`.
    pub fn written(&self) -> String {
        if self.optional {
            format!("Option<{}>", self.ty)
        } else {
            self.ty.clone()
        }
    }
}

/// One payload column as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSnapshot {
    /// Its name.
    pub name: String,
    /// Its storage type.
    pub ty: LogicalType,
    /// Whether it admits `NULL`.
    pub nullable: bool,
    /// Whether it is indexed.
    pub indexed: bool,
}

impl Snapshot {
    /// The current format: 2 records each state's event payload and version
    /// (and its events tables have `schema_version`); format 1 still loads.
    pub const FORMAT: u32 = 2;

    /// The current version of the shared tables: 1, cursors, leases and
    /// dead letters; 2, repairs; 3, idempotency keys and the outbox. A snapshot at an earlier version gets a
    /// migration that creates the tables it lacks (every statement is
    /// `IF NOT EXISTS`).
    pub const SUPPORT: u32 = 3;

    /// The snapshot of `machines` as the code declares them.
    pub fn of(machines: &[&MachineDef], version: i64) -> Self {
        Self {
            format: Self::FORMAT,
            version,
            support: Self::SUPPORT,
            machines: machines.iter().map(|m| MachineSnapshot::of(m)).collect(),
        }
    }

    /// The machine stored in `table`.
    pub fn machine(&self, table: &str) -> Option<&MachineSnapshot> {
        self.machines.iter().find(|m| m.table == table)
    }
}

impl MachineSnapshot {
    /// The snapshot of one machine as the code declares it.
    pub fn of(def: &MachineDef) -> Self {
        Self {
            name: def.name.to_owned(),
            table: def.table.to_owned(),
            events_table: def.events_table.to_owned(),
            id: def.id.ty,
            id_generated: def.id.generated,
            statuses: statuses(def),
            columns: def
                .columns
                .iter()
                .map(|c| ColumnSnapshot { name: c.name.to_owned(), ty: c.ty, nullable: c.nullable, indexed: c.indexed })
                .collect(),
            events: def
                .states
                .iter()
                .map(|s| EventSnapshot {
                    state: s.db_name.to_owned(),
                    version: s.version,
                    fields: s.payload.iter().map(FieldSnapshot::of).collect(),
                })
                .collect(),
        }
    }

    /// The event of the state stored under `db_name`.
    pub fn event(&self, db_name: &str) -> Option<&EventSnapshot> {
        self.events.iter().find(|e| e.state == db_name)
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&ColumnSnapshot> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Every stored name `status` admits: each state's name, then its earlier names.
pub(crate) fn statuses(def: &MachineDef) -> Vec<String> {
    def.states.iter().flat_map(|s| std::iter::once(s.db_name).chain(s.was.iter().copied())).map(str::to_owned).collect()
}
