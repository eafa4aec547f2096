//! The DDL each backend needs to evolve a schema, beyond creating it.

use super::plan::{Change, Plan};
use super::snapshot::{MachineSnapshot, Snapshot};
use crate::backend::{render, Backend};
use crate::schema::{ColumnDef, MachineDef};

/// A backend whose schema statefold can migrate.
///
/// Implemented by every backend; the methods are the statements that differ
/// between dialects when a schema changes.
pub trait Dialect: Backend {
    /// The directory holding this dialect's migrations, under the migrations root.
    const DIR: &'static str;

    /// Whether the records table is rebuilt (created anew and copied) to
    /// change its `status` check or a column's nullability or type: SQLite
    /// cannot alter constraints in place.
    #[doc(hidden)]
    const REBUILDS: bool = false;

    /// Creates the index of a `#[column(index)]` column.
    #[doc(hidden)]
    fn add_index_sql(def: &MachineDef, column: &ColumnDef) -> String {
        format!(
            "CREATE INDEX {} ON {} ({})",
            Self::quote_ident(&render::column_index_name(def, column.name)),
            Self::quote_ident(def.table),
            Self::quote_ident(column.name)
        )
    }

    /// Drops the index of a column.
    #[doc(hidden)]
    fn drop_index_sql(def: &MachineDef, column: &str) -> String {
        format!("DROP INDEX {}", Self::quote_ident(&render::column_index_name(def, column)))
    }

    /// Makes a column admit `NULL`, or no longer admit it, as `column.nullable` says.
    #[doc(hidden)]
    fn set_nullability_sql(def: &MachineDef, column: &ColumnDef) -> String;
}

#[cfg(feature = "sqlite")]
impl Dialect for crate::Sqlite {
    const DIR: &'static str = "sqlite";
    const REBUILDS: bool = true;

    /// Unused: SQLite rebuilds the table instead.
    fn set_nullability_sql(def: &MachineDef, column: &ColumnDef) -> String {
        format!("-- rebuild of {} changes {}", def.table, column.name)
    }
}

#[cfg(feature = "postgres")]
impl Dialect for crate::Postgres {
    const DIR: &'static str = "postgres";

    fn set_nullability_sql(def: &MachineDef, column: &ColumnDef) -> String {
        let action = if column.nullable { "DROP" } else { "SET" };
        format!(
            "ALTER TABLE {} ALTER COLUMN {} {action} NOT NULL",
            Self::quote_ident(def.table),
            Self::quote_ident(column.name)
        )
    }
}

#[cfg(feature = "mysql")]
impl Dialect for crate::MySql {
    const DIR: &'static str = "mysql";

    /// Text and byte columns are indexed on their first 255 characters, as in `CREATE TABLE`.
    fn add_index_sql(def: &MachineDef, column: &ColumnDef) -> String {
        use crate::schema::LogicalType;
        let prefix = if matches!(column.ty, LogicalType::Text | LogicalType::Bytes) { "(255)" } else { "" };
        format!(
            "CREATE INDEX {} ON {} ({}{prefix})",
            Self::quote_ident(&render::column_index_name(def, column.name)),
            Self::quote_ident(def.table),
            Self::quote_ident(column.name)
        )
    }

    fn drop_index_sql(def: &MachineDef, column: &str) -> String {
        format!(
            "DROP INDEX {} ON {}",
            Self::quote_ident(&render::column_index_name(def, column)),
            Self::quote_ident(def.table)
        )
    }

    fn set_nullability_sql(def: &MachineDef, column: &ColumnDef) -> String {
        format!("ALTER TABLE {} MODIFY COLUMN {}", Self::quote_ident(def.table), Self::column_sql(column))
    }
}

/// The statements applying `plan` to a database migrated up to `old`.
pub(crate) fn statements<D: Dialect>(old: &Snapshot, plan: &Plan) -> Vec<String> {
    let q = D::quote_ident;
    // Tables whose change cannot be made in place on this dialect.
    let rebuilds: Vec<&str> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::ChangeStatuses { def, .. }
            | Change::ChangeNullability { def, .. }
            | Change::RetypeColumn { def, .. }
                if D::REBUILDS =>
            {
                Some(def.table)
            }
            _ => None,
        })
        .collect();
    let mut rebuilt: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for change in &plan.changes {
        if let Some(def) = altered(change).filter(|d| rebuilds.contains(&d.table)) {
            if let (false, Some(before)) = (rebuilt.contains(&def.table), old.machine(def.table)) {
                rebuilt.push(def.table);
                out.extend(rebuild::<D>(before, plan, def));
            }
            continue;
        }
        match change {
            Change::CreateSupportTables => out.extend(D::support_tables_sql()),
            Change::CreateMachine { def } => out.extend(D::create_tables_sql(def)),
            Change::AddEventVersions { def } => out.push(format!(
                "ALTER TABLE {} ADD COLUMN {}",
                q(def.events_table),
                render::schema_version_column::<D>()
            )),
            Change::DropMachine { old } => {
                out.push(format!("DROP TABLE {}", q(&old.events_table)));
                out.push(format!("DROP TABLE {}", q(&old.table)));
            }
            Change::ChangeStatuses { def, .. } => {
                let table = q(def.table);
                out.push(format!("ALTER TABLE {table} DROP CONSTRAINT {}", q(&render::status_check_name(def))));
                out.push(format!("ALTER TABLE {table} ADD {}", D::status_check_sql(def)));
            }
            Change::RenameState { def, from, to } => out.push(format!(
                "UPDATE {} SET {status} = {} WHERE {status} = {}",
                q(def.table),
                D::string_literal(to),
                D::string_literal(from),
                status = q("status"),
            )),
            Change::AddColumn { def, column } => {
                out.push(format!("ALTER TABLE {} ADD COLUMN {}", q(def.table), D::column_sql(column)));
            }
            Change::DropColumn { def, old } => {
                out.push(format!("ALTER TABLE {} DROP COLUMN {}", q(def.table), q(&old.name)));
            }
            Change::RetypeColumn { def, old, column } => {
                out.push(format!("ALTER TABLE {} DROP COLUMN {}", q(def.table), q(&old.name)));
                out.push(format!("ALTER TABLE {} ADD COLUMN {}", q(def.table), D::column_sql(column)));
            }
            Change::ChangeNullability { def, column } => out.push(D::set_nullability_sql(def, column)),
            Change::AddIndex { def, column } => out.push(D::add_index_sql(def, column)),
            Change::DropIndex { def, column } => out.push(D::drop_index_sql(def, column)),
        }
    }
    out
}

/// The machine whose existing tables `change` alters.
fn altered(change: &Change) -> Option<&'static MachineDef> {
    match change {
        Change::ChangeStatuses { def, .. }
        | Change::RenameState { def, .. }
        | Change::AddColumn { def, .. }
        | Change::DropColumn { def, .. }
        | Change::RetypeColumn { def, .. }
        | Change::ChangeNullability { def, .. }
        | Change::AddIndex { def, .. }
        | Change::DropIndex { def, .. } => Some(def),
        Change::CreateSupportTables
        | Change::CreateMachine { .. }
        | Change::AddEventVersions { .. }
        | Change::DropMachine { .. } => None,
    }
}

/// Rebuilds a records table under its new definition, copying every row:
/// kept columns as they are, renamed states under their new names, new and
/// retyped columns as `NULL`.
fn rebuild<D: Dialect>(before: &MachineSnapshot, plan: &Plan, def: &MachineDef) -> Vec<String> {
    let q = D::quote_ident;
    let fresh = format!("{}__statefold_rebuild", def.table);
    let renames: Vec<(&str, &str)> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::RenameState { def: d, from, to } if d.table == def.table => Some((from.as_str(), *to)),
            _ => None,
        })
        .collect();
    let status = if renames.is_empty() {
        q("status")
    } else {
        let arms: Vec<String> = renames
            .iter()
            .map(|(from, to)| format!("WHEN {} THEN {}", D::string_literal(from), D::string_literal(to)))
            .collect();
        format!("CASE {} {} ELSE {} END", q("status"), arms.join(" "), q("status"))
    };
    let kept: Vec<&str> =
        def.columns.iter().filter(|c| before.column(c.name).is_some_and(|b| b.ty == c.ty)).map(|c| c.name).collect();
    let header = ["id", "status", "version", "created_at", "updated_at"];
    let targets = render::list::<D>(header.iter().copied().chain(kept.iter().copied()));
    let sources: Vec<String> = header
        .iter()
        .map(|&c| if c == "status" { status.clone() } else { q(c) })
        .chain(kept.iter().map(|c| q(c)))
        .collect();
    // SQLite's documented order: create the new table under another name,
    // copy, drop the old one, rename the new one into place. Renaming the old
    // table aside instead would rewrite views and triggers to point at it.
    let create = D::records_table_sql(def).replacen(
        &format!("CREATE TABLE IF NOT EXISTS {}", q(def.table)),
        &format!("CREATE TABLE {}", q(&fresh)),
        1,
    );
    let mut out = vec![
        create,
        format!("INSERT INTO {} ({targets}) SELECT {} FROM {}", q(&fresh), sources.join(", "), q(def.table)),
        format!("DROP TABLE {}", q(def.table)),
        format!("ALTER TABLE {} RENAME TO {}", q(&fresh), q(def.table)),
    ];
    out.extend(D::indexes_sql(def));
    out
}
