//! What changed between the migrated schema and the code, as a list of
//! [`Change`]s, each known to be safe or to lose data.

use super::snapshot::{statuses, ColumnSnapshot, MachineSnapshot, Snapshot};
use crate::schema::{ColumnDef, MachineDef};
use std::fmt;

/// One step from the migrated schema towards the code's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The tables every machine shares (cursors, leases, dead letters, repairs,
    /// idempotency keys, the outbox).
    CreateSupportTables,
    /// A new machine: create its tables and indexes.
    CreateMachine {
        /// The machine as declared.
        def: &'static MachineDef,
    },
    /// A machine no longer declared: drop its tables. Loses data.
    DropMachine {
        /// The machine as migrated.
        old: MachineSnapshot,
    },
    /// The set of stored state names changed: rewrite the `status` check.
    /// Loses data when a removed name may still be held by rows.
    ChangeStatuses {
        /// The machine as declared.
        def: &'static MachineDef,
        /// Names `status` admits now and did not before.
        added: Vec<String>,
        /// Names `status` admitted before and no longer does.
        removed: Vec<String>,
    },
    /// A state was renamed (`#[state(name = "new", was = "old")]`): rows keep their state.
    RenameState {
        /// The machine as declared.
        def: &'static MachineDef,
        /// The earlier stored name.
        from: String,
        /// The stored name now.
        to: &'static str,
    },
    /// A new column.
    AddColumn {
        /// The machine as declared.
        def: &'static MachineDef,
        /// The column as declared.
        column: &'static ColumnDef,
    },
    /// A column no longer declared. Loses its values.
    DropColumn {
        /// The machine as declared.
        def: &'static MachineDef,
        /// The column as migrated.
        old: ColumnSnapshot,
    },
    /// A column whose type changed: dropped and added again. Loses its values.
    RetypeColumn {
        /// The machine as declared.
        def: &'static MachineDef,
        /// The column as migrated.
        old: ColumnSnapshot,
        /// The column as declared.
        column: &'static ColumnDef,
    },
    /// A column that admits `NULL` now, or no longer does. The latter fails
    /// on rows holding `NULL`, so it counts as losing data.
    ChangeNullability {
        /// The machine as declared.
        def: &'static MachineDef,
        /// The column as declared.
        column: &'static ColumnDef,
    },
    /// A new index on a column.
    AddIndex {
        /// The machine as declared.
        def: &'static MachineDef,
        /// The column as declared.
        column: &'static ColumnDef,
    },
    /// An index no longer declared.
    DropIndex {
        /// The machine as declared.
        def: &'static MachineDef,
        /// The column's name.
        column: String,
    },
}

impl Change {
    /// What the change would lose, or `None` when it is safe.
    pub fn loss(&self) -> Option<String> {
        match self {
            Self::DropMachine { old } => Some(format!(
                "machine `{}` is no longer declared: dropping `{}` and `{}` loses every record and event",
                old.name, old.table, old.events_table
            )),
            Self::ChangeStatuses { def, removed, .. } if !removed.is_empty() => Some(format!(
                "`{}` no longer admits status {}: rows still in it would fail the new check, and events stored under it would no longer decode (keep the name with `#[state(was = \"..\")]` if the state was renamed)",
                def.table,
                quoted(removed)
            )),
            Self::DropColumn { def, old } => {
                Some(format!("column `{}.{}` is no longer declared: dropping it loses its values", def.table, old.name))
            }
            Self::RetypeColumn { def, old, column } => Some(format!(
                "column `{}.{}` changes from {} to {}: it is dropped and added again, losing its values",
                def.table, old.name, old.ty, column.ty
            )),
            Self::ChangeNullability { def, column } if !column.nullable => Some(format!(
                "column `{}.{}` becomes NOT NULL: rows holding NULL there make the migration fail",
                def.table, column.name
            )),
            _ => None,
        }
    }

    /// A short name for the migration file, e.g. `create_orders`.
    pub fn slug(&self) -> String {
        match self {
            Self::CreateSupportTables => "create_support_tables".to_owned(),
            Self::CreateMachine { def } => format!("create_{}", def.table),
            Self::DropMachine { old } => format!("drop_{}", old.table),
            Self::ChangeStatuses { def, .. } => format!("{}_states", def.table),
            Self::RenameState { def, to, .. } => format!("{}_rename_{to}", def.table),
            Self::AddColumn { def, column } => format!("{}_add_{}", def.table, column.name),
            Self::DropColumn { def, old } => format!("{}_drop_{}", def.table, old.name),
            Self::RetypeColumn { def, column, .. } => format!("{}_retype_{}", def.table, column.name),
            Self::ChangeNullability { def, column } => format!("{}_{}_nullability", def.table, column.name),
            Self::AddIndex { def, column } => format!("{}_index_{}", def.table, column.name),
            Self::DropIndex { def, column } => format!("{}_unindex_{column}", def.table),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateSupportTables => f.write_str(
                "create the shared tables (cursors, leases, dead letters, repairs, idempotency keys, outbox)",
            ),
            Self::CreateMachine { def } => {
                write!(f, "create machine `{}` (tables `{}`, `{}`)", def.name, def.table, def.events_table)
            }
            Self::DropMachine { old } => {
                write!(f, "drop machine `{}` (tables `{}`, `{}`)", old.name, old.table, old.events_table)
            }
            Self::ChangeStatuses { def, added, removed } => {
                write!(f, "`{}`: status", def.table)?;
                if !added.is_empty() {
                    write!(f, " admits {}", quoted(added))?;
                }
                if !removed.is_empty() {
                    let sep = if added.is_empty() { "" } else { "," };
                    write!(f, "{sep} no longer admits {}", quoted(removed))?;
                }
                Ok(())
            }
            Self::RenameState { def, from, to } => write!(f, "`{}`: rows in `{from}` move to `{to}`", def.table),
            Self::AddColumn { def, column } => write!(
                f,
                "`{}`: add column `{}` {}{}",
                def.table,
                column.name,
                column.ty,
                if column.nullable { "" } else { " NOT NULL" }
            ),
            Self::DropColumn { def, old } => write!(f, "`{}`: drop column `{}`", def.table, old.name),
            Self::RetypeColumn { def, old, column } => {
                write!(f, "`{}`: column `{}` changes type from {} to {}", def.table, column.name, old.ty, column.ty)
            }
            Self::ChangeNullability { def, column } => write!(
                f,
                "`{}`: column `{}` becomes {}",
                def.table,
                column.name,
                if column.nullable { "nullable" } else { "NOT NULL" }
            ),
            Self::AddIndex { def, column } => write!(f, "`{}`: index column `{}`", def.table, column.name),
            Self::DropIndex { def, column } => write!(f, "`{}`: drop the index on `{column}`", def.table),
        }
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// A change no migration can make on its own, whatever the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The machine's name.
    pub machine: String,
    /// What changed and what to do instead.
    pub reason: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.machine, self.reason)
    }
}

/// The changes from a snapshot to the code, in the order a migration applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every change, safe or not.
    pub changes: Vec<Change>,
    /// Changes that need a hand-written migration.
    pub unsupported: Vec<Unsupported>,
}

impl Plan {
    /// Compares the migrated schema with the code's machines.
    pub fn new(old: &Snapshot, machines: &[&'static MachineDef]) -> Self {
        let mut plan = Self::default();
        if old.support < Snapshot::SUPPORT && !machines.is_empty() {
            plan.changes.push(Change::CreateSupportTables);
        }
        for &def in machines {
            match old.machine(def.table) {
                None => plan.changes.push(Change::CreateMachine { def }),
                Some(before) => plan.machine(before, def),
            }
        }
        for before in &old.machines {
            if !machines.iter().any(|m| m.table == before.table) {
                plan.changes.push(Change::DropMachine { old: before.clone() });
            }
        }
        plan
    }

    /// Whether the code and the snapshot agree.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.unsupported.is_empty()
    }

    /// What the changes would lose, one line each.
    pub fn losses(&self) -> Vec<String> {
        self.changes.iter().filter_map(Change::loss).collect()
    }

    fn unsupported(&mut self, def: &MachineDef, reason: String) {
        self.unsupported.push(Unsupported { machine: def.name.to_owned(), reason });
    }

    fn machine(&mut self, before: &MachineSnapshot, def: &'static MachineDef) {
        if before.events_table != def.events_table {
            self.unsupported(
                def,
                format!(
                    "the events table moves from `{}` to `{}`: rename it by hand, or keep `#[machine(events_table = \"{}\")]`",
                    before.events_table, def.events_table, before.events_table
                ),
            );
        }
        if before.id != def.id.ty || before.id_generated != def.id.generated {
            self.unsupported(
                def,
                format!(
                    "the record key changes from {} to {}: every row and event refers to it, so write this migration by hand",
                    key(before.id, before.id_generated),
                    key(def.id.ty, def.id.generated)
                ),
            );
        }

        let now = statuses(def);
        let added: Vec<String> = now.iter().filter(|s| !before.statuses.contains(s)).cloned().collect();
        let removed: Vec<String> = before.statuses.iter().filter(|s| !now.contains(s)).cloned().collect();
        if !added.is_empty() || !removed.is_empty() {
            self.changes.push(Change::ChangeStatuses { def, added, removed });
        }
        // A rename is new when the earlier name was admitted and the new one was not.
        for state in def.states {
            if before.statuses.iter().any(|s| s == state.db_name) {
                continue;
            }
            for &was in state.was {
                if before.statuses.iter().any(|s| s == was) {
                    self.changes.push(Change::RenameState { def, from: was.to_owned(), to: state.db_name });
                }
            }
        }

        for old in &before.columns {
            if def.column(&old.name).is_none() {
                if old.indexed {
                    self.changes.push(Change::DropIndex { def, column: old.name.clone() });
                }
                self.changes.push(Change::DropColumn { def, old: old.clone() });
            }
        }
        for column in def.columns {
            let Some(old) = before.column(column.name) else {
                if !column.nullable {
                    self.unsupported(
                        def,
                        format!(
                            "new column `{}` is NOT NULL (every initial state sets it), but existing rows have no value for it: declare the field as `Option<_>` first",
                            column.name
                        ),
                    );
                    continue;
                }
                self.changes.push(Change::AddColumn { def, column });
                if column.indexed {
                    self.changes.push(Change::AddIndex { def, column });
                }
                continue;
            };
            if old.ty != column.ty {
                if !column.nullable {
                    // Re-adding a NOT NULL column fails on PostgreSQL and is
                    // silently filled with made-up defaults on MySQL.
                    self.unsupported(
                        def,
                        format!(
                            "column `{}` changes from {} to {} and is NOT NULL: existing rows have no value of the new type; write this migration by hand",
                            column.name, old.ty, column.ty
                        ),
                    );
                    continue;
                }
                if old.indexed {
                    self.changes.push(Change::DropIndex { def, column: old.name.clone() });
                }
                self.changes.push(Change::RetypeColumn { def, old: old.clone(), column });
                if column.indexed {
                    self.changes.push(Change::AddIndex { def, column });
                }
                continue;
            }
            if old.nullable != column.nullable {
                self.changes.push(Change::ChangeNullability { def, column });
            }
            match (old.indexed, column.indexed) {
                (false, true) => self.changes.push(Change::AddIndex { def, column }),
                (true, false) => self.changes.push(Change::DropIndex { def, column: old.name.clone() }),
                _ => {}
            }
        }
    }
}

fn key(ty: crate::LogicalType, generated: bool) -> String {
    if generated {
        format!("{ty} assigned by the database")
    } else {
        format!("{ty} supplied by callers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{IdDef, LogicalType, StateDef};

    const fn column(name: &'static str, ty: LogicalType, nullable: bool) -> ColumnDef {
        ColumnDef { name, ty, nullable, indexed: false }
    }

    const fn state(name: &'static str, db_name: &'static str, was: &'static [&'static str]) -> StateDef {
        StateDef { name, db_name, was, initial: true, doc: "", fields: &[] }
    }

    const fn machine(id: IdDef, states: &'static [StateDef], columns: &'static [ColumnDef]) -> MachineDef {
        MachineDef {
            name: "Order",
            doc: "",
            table: "orders",
            events_table: "order_events",
            id,
            states,
            edges: &[],
            columns,
            mermaid: "",
            dot: "",
        }
    }

    const KEY: IdDef = IdDef { ty: LogicalType::I64, generated: true };
    static V1: MachineDef = machine(
        KEY,
        &[state("Placed", "placed", &[]), state("Paid", "paid", &[])],
        &[column("customer", LogicalType::Text, false), column("note", LogicalType::Text, true)],
    );

    fn plan(next: &'static MachineDef) -> Plan {
        Plan::new(&Snapshot::of(&[&V1], 1), &[next])
    }

    #[test]
    fn no_change_is_an_empty_plan() {
        assert!(plan(&V1).is_empty());
    }

    #[test]
    fn a_new_not_null_column_needs_a_hand_written_migration() {
        static NEXT: MachineDef = machine(
            KEY,
            V1.states,
            &[
                column("customer", LogicalType::Text, false),
                column("note", LogicalType::Text, true),
                column("region", LogicalType::Text, false),
            ],
        );
        let plan = plan(&NEXT);
        assert!(plan.changes.is_empty());
        assert!(plan.unsupported[0].reason.contains("`region` is NOT NULL"), "{:?}", plan.unsupported);
    }

    #[test]
    fn retyping_a_not_null_column_needs_a_hand_written_migration() {
        static NEXT: MachineDef = machine(
            KEY,
            V1.states,
            &[column("customer", LogicalType::I64, false), column("note", LogicalType::Text, true)],
        );
        let plan = plan(&NEXT);
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
        assert!(plan.unsupported[0].reason.contains("`customer` changes from text to i64"), "{:?}", plan.unsupported);
    }

    #[test]
    fn a_changed_key_needs_a_hand_written_migration() {
        static NEXT: MachineDef = machine(IdDef { ty: LogicalType::Uuid, generated: false }, V1.states, V1.columns);
        let plan = plan(&NEXT);
        assert!(plan.unsupported[0].reason.contains("record key changes"), "{:?}", plan.unsupported);
    }

    #[test]
    fn losing_changes_say_what_they_lose_and_safe_ones_do_not() {
        static NEXT: MachineDef = machine(
            KEY,
            &[state("Placed", "placed", &[])],
            &[column("customer", LogicalType::Text, true), column("note", LogicalType::I64, true)],
        );
        let plan = plan(&NEXT);
        let losses = plan.losses();
        assert_eq!(plan.changes.len(), 3, "{:?}", plan.changes);
        assert_eq!(losses.len(), 2, "{losses:?}");
        assert!(losses[0].contains("no longer admits status `paid`"), "{losses:?}");
        assert!(losses[1].contains("changes from text to i64"), "{losses:?}");
        assert!(
            matches!(&plan.changes[1], Change::ChangeNullability { column, .. } if column.nullable),
            "becoming nullable loses nothing: {:?}",
            plan.changes
        );
    }

    #[test]
    fn a_rename_keeps_rows_and_admits_both_names() {
        static NEXT: MachineDef =
            machine(KEY, &[state("Placed", "placed", &[]), state("Paid", "settled", &["paid"])], V1.columns);
        let plan = plan(&NEXT);
        assert!(plan.losses().is_empty(), "{:?}", plan.losses());
        assert_eq!(
            plan.changes[1],
            Change::RenameState { def: &NEXT, from: "paid".to_owned(), to: "settled" },
            "{:?}",
            plan.changes
        );
    }
}
