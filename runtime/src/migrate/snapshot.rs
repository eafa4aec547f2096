//! The schema a migration directory has reached, stored beside its files.

use crate::schema::{LogicalType, MachineDef};
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
    /// The current format.
    pub const FORMAT: u32 = 1;

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
        }
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
