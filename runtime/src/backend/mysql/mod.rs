//! MySQL and MariaDB: a few statements inside one transaction.

use super::render::{self, Params};
use super::{Backend, Bind, Codec, Conn, Failure, Write, Written};

mod log;
use crate::error::Error;
use crate::schema::{LogicalType, MachineDef};
use crate::value::Value;
use chrono::NaiveDateTime;
use log::MySqlLog;
use sqlx::error::BoxDynError;
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlDatabaseError, MySqlRow};
use sqlx::types::Json;
use sqlx::{Arguments, Pool, Row};
use std::str::FromStr;

/// MySQL 8 or MariaDB 10.5 and later (feature `mysql`).
///
/// MySQL has neither data-modifying CTEs nor `UPDATE .. RETURNING`, so a
/// transition is `UPDATE` (guarded), `SELECT` of the new row, and `INSERT` of
/// the event, inside one transaction. Text is `utf8mb4`. String keys are
/// stored as `VARBINARY(1020)` so that they compare byte for byte (case,
/// accents and trailing spaces make other keys; read them in your own
/// queries as bytes or through `CAST(id AS CHAR)`); other text columns use
/// `utf8mb4_unicode_ci` and read back as `String`. Uuids are stored as `CHAR(36)`.
///
/// ```no_run
/// # async fn run() -> Result<(), statefold::Error> {
/// use statefold::{Backend, MySql};
/// let pool = MySql::connect("mysql://root@127.0.0.1:3306/app").await?;
/// # let _ = pool;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MySql;

impl super::sealed::Sealed for MySql {}

#[doc(hidden)]
pub struct MySqlPlan {
    insert: Vec<String>,
    update: Vec<String>,
    insert_event: String,
    select: String,
    /// The whole row by id, locked for the write's transaction (a transition by id).
    lock: String,
    row_types: Vec<LogicalType>,
    /// Per state: the position in the row of each of its fields.
    state_columns: Vec<Vec<usize>>,
    guard_names: usize,
}

/// The type of `id` and `record_id`. Text keys are bytes compared byte for
/// byte: every binary collation of MySQL and MariaDB that both servers know
/// (`utf8mb4_bin`) pads with spaces, so `'ada'` and `'ada '` would be one
/// key. They need a bounded length to be indexed: 255 characters of up to
/// four bytes.
fn key_type(ty: LogicalType) -> &'static str {
    match ty {
        LogicalType::Text => "VARBINARY(1020)",
        other => MySql::column_type(other),
    }
}

/// The names in `status`, `kind`, `from_status` and `to_status`.
const NAME_TYPE: &str = "VARCHAR(255)";

/// Records and events tables: text in a collation MySQL and MariaDB both
/// know, not a binary one, which the driver would report as `VARBINARY` to a
/// user reading a column as a `String`. The library compares only state
/// names in them (lowercase ASCII, checked by the derive) and keys, which are
/// bytes ([`key_type`]).
const TABLE_OPTIONS: &str = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

/// The shared tables: their names (consumers, leases, idempotency keys)
/// compare exactly.
const SUPPORT_TABLE_OPTIONS: &str = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

impl Backend for MySql {
    type Db = sqlx::MySql;
    const NAME: &'static str = "MySQL";

    async fn connect(url: &str) -> Result<Pool<Self::Db>, Error> {
        super::check_scheme(Self::NAME, url, &["mysql", "mariadb"], "mysql://root@localhost:3306/app")?;
        let options = MySqlConnectOptions::from_str(url).map_err(|e| super::bad_url(Self::NAME, &e))?;
        Ok(Self::pool_options().connect_with(options).await?)
    }

    fn quote_ident(ident: &str) -> String {
        format!("`{}`", ident.replace('`', "``"))
    }

    fn column_type(ty: LogicalType) -> &'static str {
        match ty {
            LogicalType::Bool => "TINYINT(1)",
            LogicalType::I32 => "INT",
            LogicalType::I64 => "BIGINT",
            LogicalType::F64 => "DOUBLE",
            LogicalType::Text => "LONGTEXT",
            LogicalType::Bytes => "LONGBLOB",
            LogicalType::Timestamp => "DATETIME(6)",
            LogicalType::Uuid => "CHAR(36)",
            LogicalType::Json => "JSON",
        }
    }

    /// Indexes are declared inside the table (MySQL has no `CREATE INDEX IF
    /// NOT EXISTS`); text and byte columns are indexed on their first 255 characters.
    fn records_table_sql(def: &MachineDef) -> String {
        let q = Self::quote_ident;
        let id = if def.id.generated {
            format!("{} BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY", q("id"))
        } else {
            format!("{} {} NOT NULL PRIMARY KEY", q("id"), key_type(def.id.ty))
        };
        let mut elements = vec![id];
        elements.extend(render::record_body::<Self>(def, NAME_TYPE));
        elements.push(Self::status_check_sql(def));
        elements.push(format!(
            "KEY {} ({})",
            q(&render::status_index_name(def)),
            render::list::<Self>(["status", "id"])
        ));
        elements.extend(def.columns.iter().filter(|c| c.indexed).map(|c| {
            let prefix = if matches!(c.ty, LogicalType::Text | LogicalType::Bytes) { "(255)" } else { "" };
            format!("KEY {} ({}{prefix})", q(&render::column_index_name(def, c.name)), q(c.name))
        }));
        render::create_table::<Self>(def.table, &elements, TABLE_OPTIONS)
    }

    fn events_table_sql(def: &MachineDef) -> String {
        let mut elements = vec![format!("{} BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY", Self::quote_ident("id"))];
        elements.extend(render::event_body::<Self>(key_type(def.id.ty), NAME_TYPE));
        elements.push(render::event_version_key::<Self>(def));
        render::create_table::<Self>(def.events_table, &elements, TABLE_OPTIONS)
    }

    /// Empty: the indexes are part of [`records_table_sql`](Self::records_table_sql).
    fn indexes_sql(_: &MachineDef) -> Vec<String> {
        Vec::new()
    }

    fn support_tables_sql() -> Vec<String> {
        let serial = format!("{} BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY", Self::quote_ident("id"));
        render::support_tables::<Self>(NAME_TYPE, &serial, SUPPORT_TABLE_OPTIONS)
    }

    /// Backslashes escape in MySQL string literals unless `NO_BACKSLASH_ESCAPES` is set.
    fn string_literal(value: &str) -> String {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
    }

    fn placeholder(_: usize) -> String {
        "?".to_owned()
    }

    const ONE_STATEMENT: bool = false;
    const BEGIN_WRITE: Option<&'static str> = None;
    const BEGIN_SNAPSHOT: &'static str = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";

    type Plan = MySqlPlan;

    fn plan(def: &'static MachineDef) -> MySqlPlan {
        MySqlPlan {
            insert: def.states.iter().map(|s| render::insert_record(def, s, &mut Params::<Self>::new())).collect(),
            update: def.states.iter().map(|s| render::update_record(def, s, &mut Params::<Self>::new())).collect(),
            insert_event: render::insert_event_values(def, &mut Params::<Self>::new()),
            select: render::Queries::new::<Self>(def).load,
            lock: format!("{} FOR UPDATE", render::Queries::new::<Self>(def).load),
            row_types: render::row_types(def),
            state_columns: render::Queries::new::<Self>(def).state_columns,
            guard_names: render::guard_names(def),
        }
    }

    super::query_methods!();

    async fn write(conn: &mut Conn<Self>, plan: &MySqlPlan, write: &Write) -> Result<Option<Written>, sqlx::Error> {
        let (id, version, row) = if write.is_insert() {
            let done = super::execute::<Self>(conn, &plan.insert[write.state], &write.record_binds()).await?;
            let id = match &write.id {
                Some(id) => id.clone(),
                None => Value::I64(last_insert_id(done.last_insert_id())?),
            };
            (id, Value::I64(1), None)
        } else if write.sources.is_some() {
            // By id: the row, locked, is the guard, and with the write's
            // columns it is the new row: no read after the update.
            let key = [(write.id.as_ref().unwrap_or(&Value::Null), write.id_type)];
            let Some(mut row) = super::fetch_optional::<Self>(conn, &plan.lock, &key, &plan.row_types).await? else {
                return Ok(None);
            };
            let Value::I64(version) = row[2] else { return Ok(None) };
            let Some(exact) = write.found(&row[1], version, plan.guard_names) else { return Ok(None) };
            super::execute::<Self>(conn, &plan.update[write.state], &exact.update_binds()).await?;
            row[1] = write.status.clone();
            row[2] = Value::I64(version + 1);
            row[4] = write.at.clone();
            for ((value, _), &i) in write.columns.iter().zip(&plan.state_columns[write.state]) {
                row[5 + i] = value.clone();
            }
            let event = exact.event_values_binds(&row[0], &row[2]);
            let done = super::execute::<Self>(conn, &plan.insert_event, &event).await?;
            return Ok(Some(Written {
                id: row[0].clone(),
                row: Some(row),
                position: last_insert_id(done.last_insert_id())?,
            }));
        } else {
            let done = super::execute::<Self>(conn, &plan.update[write.state], &write.update_binds()).await?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            let key = [(write.id.as_ref().unwrap_or(&Value::Null), write.id_type)];
            let row = super::fetch_optional::<Self>(conn, &plan.select, &key, &plan.row_types).await?;
            let row = row.ok_or(sqlx::Error::RowNotFound)?;
            (row[0].clone(), row[2].clone(), Some(row))
        };
        let done = super::execute::<Self>(conn, &plan.insert_event, &write.event_values_binds(&id, &version)).await?;
        Ok(Some(Written { id, row, position: last_insert_id(done.last_insert_id())? }))
    }

    const COLUMNS_SQL: &'static str = "SELECT LOWER(CAST(column_name AS CHAR)) FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = ?";
    const INDEXES_SQL: &'static str = "SELECT DISTINCT CAST(index_name AS CHAR) FROM information_schema.statistics \
         WHERE table_schema = DATABASE() AND table_name = ?";

    /// Holes in the ids are probed with locking reads.
    type Log = MySqlLog;

    const NOW_MILLIS: &'static str = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";

    // `LOCK IN SHARE MODE`, not `FOR SHARE`: MariaDB knows only the former.
    const SHARE_LOCK: &'static str = " LOCK IN SHARE MODE";

    async fn execute_with(conn: &mut Conn<Self>, sql: &str, binds: &[Bind<'_>]) -> Result<u64, sqlx::Error> {
        Ok(super::execute::<Self>(conn, sql, binds).await?.rows_affected())
    }

    /// A no-op update on a duplicate key: unlike `INSERT IGNORE`, other errors still fail.
    fn insert_if_absent(table: &str, columns: &[&str], values: &[String], key: &str) -> String {
        let key = Self::quote_ident(key);
        render::insert_if_absent::<Self>(table, columns, values, &format!(" ON DUPLICATE KEY UPDATE {key} = {key}"))
    }

    fn classify(error: &sqlx::Error) -> Failure {
        let Some(db) = error.as_database_error() else { return Failure::Other };
        let Some(mysql) = db.try_downcast_ref::<MySqlDatabaseError>() else { return Failure::Other };
        match mysql.number() {
            // ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME
            1062 | 1586 => Failure::Unique,
            // ER_NO_SUCH_TABLE: `Table 'test.orders' doesn't exist`
            1146 => {
                let name = mysql.message().split('\'').nth(1).unwrap_or(mysql.message());
                Failure::MissingTable(name.rsplit('.').next().unwrap_or(name).to_owned())
            }
            // ER_LOCK_WAIT_TIMEOUT
            1205 => Failure::LockTimeout,
            // ER_BAD_FIELD_ERROR: `Unknown column 'days' in 'field list'`
            1054 => Failure::MissingColumn(mysql.message().split('\'').nth(1).unwrap_or(mysql.message()).to_owned()),
            // ER_SPECIFIC_ACCESS_DENIED_ERROR: `you need the PROCESS privilege`
            1227 => Failure::AccessDenied,
            _ => Failure::Other,
        }
    }
}

fn last_insert_id(id: u64) -> Result<i64, sqlx::Error> {
    i64::try_from(id).map_err(|e| sqlx::Error::Decode(e.into()))
}

fn decode_error(index: usize, source: impl Into<BoxDynError>) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: index.to_string(), source: source.into() }
}

impl Codec for MySql {
    fn bind(args: &mut MySqlArguments, value: &Value, _: LogicalType) -> Result<(), BoxDynError> {
        match value {
            Value::Null => args.add(Option::<i64>::None),
            Value::Bool(v) => args.add(*v),
            Value::I32(v) => args.add(*v),
            Value::I64(v) => args.add(*v),
            Value::F64(v) => args.add(*v),
            Value::Text(v) => args.add(v.as_str()),
            Value::Bytes(v) => args.add(v.as_slice()),
            // As `DATETIME`: sqlx sends `DateTime<Utc>` as `TIMESTAMP`, whose
            // range (1970 to 2038) the server enforces on the parameter.
            Value::Timestamp(v) => args.add(v.naive_utc()),
            Value::Uuid(v) => args.add(v.hyphenated().to_string()),
            Value::Json(v) => args.add(Json(v)),
        }
    }

    fn read(row: &MySqlRow, i: usize, ty: LogicalType) -> Result<Value, sqlx::Error> {
        // Text columns are read unchecked: with a binary collation MySQL flags
        // them BINARY, which sqlx's type check takes for bytes.
        let text = || row.try_get_unchecked::<Option<String>, _>(i);
        let value = match ty {
            LogicalType::Bool => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
            LogicalType::I32 => row.try_get::<Option<i32>, _>(i)?.map(Value::I32),
            LogicalType::I64 => row.try_get::<Option<i64>, _>(i)?.map(Value::I64),
            LogicalType::F64 => row.try_get::<Option<f64>, _>(i)?.map(Value::F64),
            LogicalType::Text => text()?.map(Value::Text),
            LogicalType::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
            LogicalType::Timestamp => {
                row.try_get::<Option<NaiveDateTime>, _>(i)?.map(|at| Value::Timestamp(at.and_utc()))
            }
            LogicalType::Uuid => text()?
                .map(|text| uuid::Uuid::parse_str(&text).map(Value::Uuid).map_err(|e| decode_error(i, e)))
                .transpose()?,
            LogicalType::Json => text()?
                .map(|text| serde_json::from_str(&text).map(Value::Json).map_err(|e| decode_error(i, e)))
                .transpose()?,
        };
        Ok(value.unwrap_or(Value::Null))
    }
}
