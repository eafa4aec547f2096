//! SQLite, embedded through sqlx's bundled library.

use super::render::{self, Params};
use super::{Backend, Bind, Codec, Conn, Failure, Write, Written};

mod log;
use crate::error::Error;
use crate::schema::{LogicalType, MachineDef};
use crate::value::Value;
use chrono::{DateTime, SecondsFormat, Utc};
use log::SqliteLog;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteRow};
use sqlx::types::Json;
use sqlx::{Arguments, Pool, Row};
use std::str::FromStr;

/// Embedded SQLite (feature `sqlite`, on by default): nothing to install, one
/// file or memory.
///
/// Tables are `STRICT`. Timestamps are stored as fixed-width RFC 3339 text in
/// UTC with microseconds (`2024-05-01T09:30:00.000001Z`), and uuids as
/// lowercase hyphenated text, so both sort correctly as text. Writes take the
/// write lock up front (`BEGIN IMMEDIATE`), as SQLite allows one writer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefold::Error> {
/// use statefold::{Backend, Sqlite};
/// let pool = Sqlite::connect("sqlite::memory:").await?;
/// # let _ = pool;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Sqlite;

impl super::sealed::Sealed for Sqlite {}

#[doc(hidden)]
pub struct SqlitePlan {
    insert: Vec<String>,
    update: Vec<String>,
    insert_event: String,
    row_types: Vec<LogicalType>,
    /// A row's status and version by id (inside the write's transaction,
    /// which holds the write lock: a transition by id reads, then writes).
    head: String,
    guard_names: usize,
}

impl Backend for Sqlite {
    type Db = sqlx::Sqlite;
    const NAME: &'static str = "SQLite";

    /// Opens a pool. A file is created if missing and put in WAL mode. An
    /// in-memory database (`sqlite::memory:`) lives as long as its pool, on one
    /// connection that is never recycled; do not hold a transaction from
    /// [`Store::begin`](crate::Store::begin) while calling the store's other methods on it.
    async fn connect(url: &str) -> Result<Pool<Self::Db>, Error> {
        super::check_scheme(Self::NAME, url, &["sqlite"], "sqlite://orders.db")?;
        // sqlx reads only a lower-case scheme; any other case would name a file.
        let url = &format!("sqlite{}", &url["sqlite".len()..]);
        let options = SqliteConnectOptions::from_str(url).map_err(|e| super::bad_url(Self::NAME, &e))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            Self::pool_options().max_connections(1).idle_timeout(None).max_lifetime(None).connect_with(options).await?
        } else {
            let options = options.create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
            Self::pool_options().connect_with(options).await?
        };
        Ok(pool)
    }

    /// In grave accents, which SQLite reads only as an identifier: a name in
    /// double quotes that matches no column is read as a string literal
    /// (SQLite's "double-quoted string" quirk), so code running ahead of its
    /// migrations would read the column's name as its value instead of failing.
    fn quote_ident(ident: &str) -> String {
        format!("`{}`", ident.replace('`', "``"))
    }

    fn column_type(ty: LogicalType) -> &'static str {
        match ty {
            LogicalType::Bool | LogicalType::I32 | LogicalType::I64 => "INTEGER",
            LogicalType::F64 => "REAL",
            LogicalType::Text | LogicalType::Timestamp | LogicalType::Uuid | LogicalType::Json => "TEXT",
            LogicalType::Bytes => "BLOB",
        }
    }

    fn records_table_sql(def: &MachineDef) -> String {
        let id = if def.id.generated {
            format!("{} INTEGER PRIMARY KEY AUTOINCREMENT", Self::quote_ident("id"))
        } else {
            format!("{} {} PRIMARY KEY NOT NULL", Self::quote_ident("id"), Self::column_type(def.id.ty))
        };
        let mut elements = vec![id];
        elements.extend(render::record_body::<Self>(def, "TEXT"));
        elements.push(Self::status_check_sql(def));
        render::create_table::<Self>(def.table, &elements, " STRICT")
    }

    fn events_table_sql(def: &MachineDef) -> String {
        let mut elements = vec![format!("{} INTEGER PRIMARY KEY AUTOINCREMENT", Self::quote_ident("id"))];
        elements.extend(render::event_body::<Self>(Self::column_type(def.id.ty), "TEXT"));
        elements.push(render::event_version_key::<Self>(def));
        render::create_table::<Self>(def.events_table, &elements, " STRICT")
    }

    fn indexes_sql(def: &MachineDef) -> Vec<String> {
        render::create_indexes::<Self>(def)
    }

    fn support_tables_sql() -> Vec<String> {
        let serial = format!("{} INTEGER PRIMARY KEY AUTOINCREMENT", Self::quote_ident("id"));
        render::support_tables::<Self>("TEXT", &serial, " STRICT")
    }

    fn placeholder(_: usize) -> String {
        "?".to_owned()
    }

    const ONE_STATEMENT: bool = false;
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");
    /// Nothing: a write transaction holds the database's write lock.
    const FOR_UPDATE: &'static str = "";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";

    type Plan = SqlitePlan;

    fn plan(def: &'static MachineDef) -> SqlitePlan {
        let returning = |sql: String, columns: &str| format!("{sql} RETURNING {columns}");
        let id = Self::quote_ident("id");
        let columns = render::record_columns::<Self>(def);
        SqlitePlan {
            insert: def
                .states
                .iter()
                .map(|s| returning(render::insert_record(def, s, &mut Params::<Self>::new()), &id))
                .collect(),
            update: def
                .states
                .iter()
                .map(|s| returning(render::update_record(def, s, &mut Params::<Self>::new()), &columns))
                .collect(),
            insert_event: returning(render::insert_event_values(def, &mut Params::<Self>::new()), &id),
            row_types: render::row_types(def),
            head: render::Queries::new::<Self>(def).head,
            guard_names: render::guard_names(def),
        }
    }

    super::query_methods!();

    async fn write(conn: &mut Conn<Self>, plan: &SqlitePlan, write: &Write) -> Result<Option<Written>, sqlx::Error> {
        let found;
        let write = match &write.sources {
            // By id: the row's state, read under the write lock, is the guard.
            Some(_) => {
                let key = [(write.id.as_ref().unwrap_or(&Value::Null), write.id_type)];
                let row = super::fetch_optional::<Self>(conn, &plan.head, &key, &[LogicalType::Text, LogicalType::I64])
                    .await?;
                let Some([status, Value::I64(version)]) = row.as_deref() else { return Ok(None) };
                match write.found(status, *version, plan.guard_names) {
                    Some(exact) => {
                        found = exact;
                        &found
                    }
                    None => return Ok(None),
                }
            }
            None => write,
        };
        let (id, version, row) = if write.is_insert() {
            let id =
                super::fetch_optional::<Self>(conn, &plan.insert[write.state], &write.record_binds(), &[write.id_type])
                    .await?;
            (single(id)?, Value::I64(1), None)
        } else {
            let row =
                super::fetch_optional::<Self>(conn, &plan.update[write.state], &write.update_binds(), &plan.row_types)
                    .await?;
            let Some(row) = row else { return Ok(None) };
            (row[0].clone(), row[2].clone(), Some(row))
        };
        let binds = write.event_values_binds(&id, &version);
        let position = super::fetch_optional::<Self>(conn, &plan.insert_event, &binds, &[LogicalType::I64]).await?;
        Ok(Some(Written { id, row, position: super::position(single(position)?)? }))
    }

    const COLUMNS_SQL: &'static str = "SELECT lower(name) FROM pragma_table_info(?)";
    const INDEXES_SQL: &'static str = "SELECT name FROM pragma_index_list(?)";

    /// One writer at a time: event ids are commit order.
    type Log = SqliteLog;

    const NOW_MILLIS: &'static str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

    async fn execute_with(conn: &mut Conn<Self>, sql: &str, binds: &[Bind<'_>]) -> Result<u64, sqlx::Error> {
        Ok(super::execute::<Self>(conn, sql, binds).await?.rows_affected())
    }

    fn insert_if_absent(table: &str, columns: &[&str], values: &[String], _key: &str) -> String {
        render::insert_if_absent::<Self>(table, columns, values, " ON CONFLICT DO NOTHING")
    }

    fn classify(error: &sqlx::Error) -> Failure {
        let Some(db) = error.as_database_error() else { return Failure::Other };
        match db.code().as_deref() {
            // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
            Some("2067" | "1555") => Failure::Unique,
            _ => {
                let message = db.message();
                if let Some(table) = message.strip_prefix("no such table: ") {
                    Failure::MissingTable(table.trim_start_matches("main.").to_owned())
                } else if let Some(column) = message.strip_prefix("no such column: ") {
                    Failure::MissingColumn(column.to_owned())
                } else if let Some((_, column)) = message.split_once(" has no column named ") {
                    Failure::MissingColumn(column.to_owned())
                } else {
                    Failure::Other
                }
            }
        }
    }
}

/// The one-column result of a statement that must return a row.
fn single(rows: Option<Vec<Value>>) -> Result<Value, sqlx::Error> {
    rows.and_then(|row| row.into_iter().next()).ok_or(sqlx::Error::RowNotFound)
}

/// Timestamps as fixed-width text, so that text order is time order.
fn timestamp_text(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn decode_error(index: usize, source: impl Into<BoxDynError>) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: index.to_string(), source: source.into() }
}

impl Codec for Sqlite {
    fn bind<'q>(args: &mut SqliteArguments<'q>, value: &'q Value, _: LogicalType) -> Result<(), BoxDynError> {
        match value {
            Value::Null => args.add(Option::<i64>::None),
            Value::Bool(v) => args.add(*v),
            Value::I32(v) => args.add(*v),
            Value::I64(v) => args.add(*v),
            Value::F64(v) => args.add(*v),
            Value::Text(v) => args.add(v.as_str()),
            Value::Bytes(v) => args.add(v.as_slice()),
            Value::Timestamp(v) => args.add(timestamp_text(v)),
            Value::Uuid(v) => args.add(v.hyphenated().to_string()),
            Value::Json(v) => args.add(Json(v)),
        }
    }

    fn read(row: &SqliteRow, i: usize, ty: LogicalType) -> Result<Value, sqlx::Error> {
        let value = match ty {
            LogicalType::Bool => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
            // A value out of `i32` range (written by hand) stays wide, so the
            // row's own field check reports it.
            LogicalType::I32 => {
                row.try_get::<Option<i64>, _>(i)?.map(|v| i32::try_from(v).map_or(Value::I64(v), Value::I32))
            }
            LogicalType::I64 => row.try_get::<Option<i64>, _>(i)?.map(Value::I64),
            LogicalType::F64 => row.try_get::<Option<f64>, _>(i)?.map(Value::F64),
            LogicalType::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
            LogicalType::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
            LogicalType::Timestamp => row
                .try_get::<Option<String>, _>(i)?
                .map(|text| {
                    DateTime::parse_from_rfc3339(&text)
                        .map(|at| Value::Timestamp(at.with_timezone(&Utc)))
                        .map_err(|e| decode_error(i, e))
                })
                .transpose()?,
            LogicalType::Uuid => row
                .try_get::<Option<String>, _>(i)?
                .map(|text| uuid::Uuid::parse_str(&text).map(Value::Uuid).map_err(|e| decode_error(i, e)))
                .transpose()?,
            LogicalType::Json => row.try_get::<Option<Json<serde_json::Value>>, _>(i)?.map(|json| Value::Json(json.0)),
        };
        Ok(value.unwrap_or(Value::Null))
    }
}
