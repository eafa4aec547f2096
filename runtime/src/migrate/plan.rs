//! What changed between the migrated schema and the code, as a list of
//! [`Change`]s, each known to be safe or to lose data.

use super::snapshot::{statuses, ColumnSnapshot, EventSnapshot, FieldSnapshot, MachineSnapshot, Snapshot};
use crate::schema::{ColumnDef, FieldDef, MachineDef, StateDef};
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
    /// A machine migrated before event versions: add `schema_version` to its
    /// events table (1 for the events it holds), and record its events'
    /// payloads in the snapshot.
    AddEventVersions {
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
            Self::AddEventVersions { def } => format!("{}_add_schema_version", def.events_table),
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
            Self::AddEventVersions { def } => write!(
                f,
                "`{}`: add column `schema_version` (events stored so far are version 1), and record the events' payloads",
                def.events_table
            ),
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

/// A change to the payload of a state's event since the snapshot. It needs
/// no SQL, but the snapshot must record it; some would leave events already
/// stored undecodable, and are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventChange {
    /// The machine's name.
    pub machine: &'static str,
    /// The state's variant name.
    pub state: &'static str,
    /// The field's payload name, as stored events hold it (or as declared, for a new
    /// one); empty for a change of the whole event (its version).
    pub field: String,
    /// What changed.
    pub what: String,
    /// Why events already stored would no longer decode, and how to make the
    /// change safe; `None` when they still decode.
    pub refused: Option<String>,
    /// What events already stored would no longer show (a removed field:
    /// they decode, without it), and how to keep it; allowed with
    /// [`Generate::allow_destructive`](super::Generate::allow_destructive).
    pub loses: Option<String>,
}

impl fmt::Display for EventChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}::{}` event: {}", self.machine, self.state, self.what)?;
        if let Some(why) = self.refused.as_ref().or(self.loses.as_ref()) {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

/// The changes from a snapshot to the code, in the order a migration applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every change, safe or not.
    pub changes: Vec<Change>,
    /// Changes that need a hand-written migration.
    pub unsupported: Vec<Unsupported>,
    /// Changes to the events' payloads, safe or refused.
    pub events: Vec<EventChange>,
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
        self.changes.is_empty() && self.unsupported.is_empty() && self.events.is_empty()
    }

    /// The event changes that would leave stored events undecodable.
    pub fn refused(&self) -> Vec<EventChange> {
        self.events.iter().filter(|e| e.refused.is_some()).cloned().collect()
    }

    /// What the changes would lose, one line each.
    pub fn losses(&self) -> Vec<String> {
        let events = self.events.iter().filter(|e| e.loses.is_some()).map(ToString::to_string);
        self.changes.iter().filter_map(Change::loss).chain(events).collect()
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

        if before.events.is_empty() {
            self.changes.push(Change::AddEventVersions { def });
        } else {
            for state in def.states {
                let old = std::iter::once(state.db_name).chain(state.was.iter().copied()).find_map(|n| before.event(n));
                if let Some(old) = old {
                    self.event(def, state, old);
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

impl Plan {
    /// Compares a state's payload with the one its stored events hold.
    fn event(&mut self, def: &MachineDef, state: &'static StateDef, old: &EventSnapshot) {
        let mut push = |field: &str, what: String, refused: Option<String>| {
            self.events.push(EventChange {
                machine: def.name,
                state: state.name,
                field: field.to_owned(),
                what,
                refused,
                loses: None,
            });
        };
        if state.version != old.version {
            let (what, refused) = if state.version > old.version {
                let what = format!(
                    "version {} (events stored at version {} are upcast when read)",
                    state.version, old.version
                );
                (what, None)
            } else {
                let refused = format!(
                    "events are stored at version {}, which this code would not read: keep `#[event(version = {})]` with its upcasters",
                    old.version, old.version
                );
                (format!("version goes back from {} to {}", old.version, state.version), Some(refused))
            };
            push("", what, refused);
            return;
        }
        let reader = |o: &FieldSnapshot| state.payload.iter().find(|f| f.reads(&o.json));
        // Stored fields no field reads any more: removed, or renamed without an alias.
        let orphans: Vec<&FieldSnapshot> = old.fields.iter().filter(|o| reader(o).is_none()).collect();
        let mut renamed: Vec<&str> = Vec::new();
        for field in state.payload {
            let Some(o) = old.fields.iter().find(|o| field.reads(&o.json)) else {
                let twin = orphans
                    .iter()
                    .find(|o| o.ty == field.ty && o.logical == field.logical && !renamed.contains(&o.json.as_str()));
                let what = format!("new field `{}: {}`", field.json, written(field));
                if let Some(o) = twin {
                    renamed.push(o.json.as_str());
                    let refused = format!(
                        "it looks like `{}` renamed, and the events stored before carry `{}`: read them with `#[serde(alias = \"{}\")]` on `{}`, or keep the stored name with `#[serde(rename = \"{}\")]`",
                        o.json, o.json, o.json, field.name, o.json
                    );
                    push(&o.json, format!("field `{}` renamed to `{}`", o.json, field.json), Some(refused));
                } else if field.may_be_missing() {
                    push(field.json, what, None);
                } else {
                    let refused = format!(
                        "events stored before it lack `{}`, so they would no longer decode: declare it `Option<{}>`, or give it `#[serde(default)]` (a value for the events without it), or give the state a new event version with an upcaster that adds it",
                        field.json, field.ty
                    );
                    push(field.json, what, Some(refused));
                }
                continue;
            };
            if (o.ty.as_str(), o.logical) != (field.ty, field.logical) {
                let refused = format!(
                    "events stored before hold `{}` as {}, which no longer decodes as {}: keep the type, or store the new value in a new field (an `Option`, or with `#[serde(default)]`), or give the state a new event version with an upcaster that converts it",
                    o.json,
                    o.ty,
                    field.ty
                );
                push(
                    &o.json,
                    format!("field `{}` changes type from {} to {}", o.json, o.written(), written(field)),
                    Some(refused),
                );
                continue;
            }
            if o.optional && !field.optional {
                let refused = format!(
                    "events stored before may hold `null` for it, which no longer decodes: keep it `Option<{}>`, or give the state a new event version with an upcaster that fills it",
                    field.ty
                );
                push(&o.json, format!("field `{}` is no longer an `Option`", o.json), Some(refused));
                continue;
            }
            if let Some(alias) = o.aliases.iter().find(|a| !field.reads(a)) {
                let refused = format!(
                    "events stored under that name no longer decode: keep `#[serde(alias = \"{alias}\")]` on `{}`",
                    field.name
                );
                push(&o.json, format!("field `{}` is no longer read as `{alias}`", o.json), Some(refused));
                continue;
            }
            if o.default && !field.may_be_missing() {
                let refused = format!(
                    "events stored before it was added may lack `{}`, which no longer decodes: keep `#[serde(default)]`",
                    o.json
                );
                push(&o.json, format!("field `{}` loses `#[serde(default)]`", o.json), Some(refused));
                continue;
            }
            if FieldSnapshot::of(field) != *o {
                push(&o.json, describe_field_change(o, field), None);
            }
        }
        for o in orphans.iter().filter(|o| !renamed.contains(&o.json.as_str())) {
            let loses = format!(
                "events stored before carry `{}`: history, `as_of` and the audit would no longer see the value they set; keep the field (an `Option` if new events leave it empty), or give the state a new event version with an upcaster that drops it",
                o.json
            );
            self.events.push(EventChange {
                machine: def.name,
                state: state.name,
                field: o.json.clone(),
                what: format!("field `{}` is no longer declared", o.json),
                refused: None,
                loses: Some(loses),
            });
        }
    }
}

/// A field's type as people write it.
fn written(field: &FieldDef) -> String {
    if field.optional {
        format!("Option<{}>", field.ty)
    } else {
        field.ty.to_owned()
    }
}

/// A safe change to a field, in words.
fn describe_field_change(old: &FieldSnapshot, field: &FieldDef) -> String {
    let mut parts = Vec::new();
    if old.json != field.json {
        parts.push(format!("is named `{}` in new events (stored ones are read through an alias)", field.json));
    }
    if !old.optional && field.optional {
        parts.push(format!("becomes `{}`", written(field)));
    }
    if !old.default && field.default {
        parts.push("gains `#[serde(default)]`".to_owned());
    }
    let aliases: Vec<&str> = field.aliases.iter().copied().filter(|a| !old.aliases.iter().any(|o| o == a)).collect();
    if !aliases.is_empty() {
        parts.push(format!(
            "is also read as {}",
            aliases.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if old.name != field.name {
        parts.push(format!("is stored in column `{}`", field.name));
    }
    if parts.is_empty() {
        parts.push("changes how it is declared".to_owned());
    }
    format!("field `{}` {}", old.json, parts.join(", "))
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
        StateDef { name, db_name, was, initial: true, doc: "", fields: &[], payload: &[], version: 1 }
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
