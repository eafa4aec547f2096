//! PostgreSQL: each insert and transition is one atomic statement.

use super::render::{self, Params};
use super::{Backend, Bind, Codec, Conn, Failure, WakeUps, Write, Written};

mod listen;
mod log;
use crate::error::Error;
use crate::schema::{LogicalType, MachineDef};
use crate::value::Value;
use chrono::{DateTime, Utc};
use log::PostgresLog;
use serde_json::value::RawValue;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgRow, PgValueFormat};
use sqlx::types::Json;
use sqlx::{Arguments, Column, Pool, Row, TypeInfo, ValueRef};
use std::str::FromStr;
use uuid::Uuid;

/// PostgreSQL 13 or later (feature `postgres`).
///
/// An insert or a transition is one statement: a data-modifying CTE writes
/// the row (for a transition, only if it still has the expected status and
/// version) and inserts the event from what that write returned. So a write
/// is one round trip, atomic without an explicit transaction. The events
/// table also records the writing transaction's id (`tx xid8`), which
/// consumers use to read without skipping events that commit late.
///
/// PostgreSQL `TEXT` and `JSONB` cannot hold the NUL character (`\0`): a
/// string containing one is rejected with [`Error::Unrepresentable`], never
/// stored altered.
///
/// ```no_run
/// # async fn run() -> Result<(), statefold::Error> {
/// use statefold::{Backend, Postgres};
/// let pool = Postgres::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// # let _ = pool;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Postgres;

impl super::sealed::Sealed for Postgres {}

/// Each write, per state, without and with a `NOTIFY` of the machine's
/// channel (sent at commit by PostgreSQL).
#[doc(hidden)]
pub struct PostgresPlan {
    insert: [Vec<String>; 2],
    transition: [Vec<String>; 2],
    /// A transition by id: legality in the `WHERE` clause (the row in one
    /// of the entered state's sources), `from_status` from the row as it was.
    by_id: [Vec<String>; 2],
    /// A transition's result: the whole row, then the event's position.
    transition_types: Vec<LogicalType>,
}

impl Backend for Postgres {
    type Db = sqlx::Postgres;
    const NAME: &'static str = "PostgreSQL";

    async fn connect(url: &str) -> Result<Pool<Self::Db>, Error> {
        super::check_scheme(Self::NAME, url, &["postgres", "postgresql"], "postgres://user@localhost:5432/app")?;
        let options = PgConnectOptions::from_str(url).map_err(|e| super::bad_url(Self::NAME, &e))?;
        Ok(Self::pool_options().connect_with(options).await?)
    }

    fn quote_ident(ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    fn column_type(ty: LogicalType) -> &'static str {
        match ty {
            LogicalType::Bool => "BOOLEAN",
            LogicalType::I32 => "INTEGER",
            LogicalType::I64 => "BIGINT",
            LogicalType::F64 => "DOUBLE PRECISION",
            LogicalType::Text => "TEXT",
            LogicalType::Bytes => "BYTEA",
            LogicalType::Timestamp => "TIMESTAMPTZ",
            LogicalType::Uuid => "UUID",
            LogicalType::Json => "JSONB",
        }
    }

    fn records_table_sql(def: &MachineDef) -> String {
        let id = if def.id.generated {
            format!("{} BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", Self::quote_ident("id"))
        } else {
            format!("{} {} PRIMARY KEY", Self::quote_ident("id"), Self::column_type(def.id.ty))
        };
        let mut elements = vec![id];
        elements.extend(render::record_body::<Self>(def, "TEXT"));
        elements.push(Self::status_check_sql(def));
        render::create_table::<Self>(def.table, &elements, "")
    }

    /// Besides the common columns, `tx xid8` holds the id of the transaction
    /// that wrote each event, for gap-safe reads by position. It is not
    /// indexed: such reads go by position and filter on it.
    fn events_table_sql(def: &MachineDef) -> String {
        let mut elements = vec![format!("{} BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", Self::quote_ident("id"))];
        elements.extend(render::event_body::<Self>(Self::column_type(def.id.ty), "TEXT"));
        elements.push(format!("{} xid8 NOT NULL DEFAULT pg_current_xact_id()", Self::quote_ident("tx")));
        elements.push(render::event_version_key::<Self>(def));
        render::create_table::<Self>(def.events_table, &elements, "")
    }

    /// Besides the common indexes, `(tx, id)` on the events table: the
    /// order in which gap-safe readers take events.
    fn indexes_sql(def: &MachineDef) -> Vec<String> {
        let mut indexes = render::create_indexes::<Self>(def);
        indexes.push(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
            Self::quote_ident(&format!("{}_tx_idx", def.events_table)),
            Self::quote_ident(def.events_table),
            render::list::<Self>(["tx", "id"])
        ));
        indexes
    }

    fn support_tables_sql() -> Vec<String> {
        let serial = format!("{} BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", Self::quote_ident("id"));
        render::support_tables::<Self>("TEXT", &serial, "")
    }

    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    const ONE_STATEMENT: bool = true;
    const BEGIN_WRITE: Option<&'static str> = None;
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

    type Plan = PostgresPlan;

    fn plan(def: &'static MachineDef) -> PostgresPlan {
        let q = Self::quote_ident;
        let (id, version, record_id) = (q("id"), q("version"), q("record_id"));
        let (rec, upd, ev, n) = (q("rec"), q("upd"), q("ev"), q("n"));
        let notify = |p: &mut Params<Self>, notify: bool| {
            if notify {
                (format!(", {n} AS (SELECT pg_notify({}, ''))", p.next()), format!(", {n}"))
            } else {
                (String::new(), String::new())
            }
        };
        let insert = |state, with_notify| {
            let mut p = Params::<Self>::new();
            let record = render::insert_record(def, state, &mut p);
            let event = render::insert_event_select(def, "rec", &mut p);
            let (cte, from) = notify(&mut p, with_notify);
            format!(
                "WITH {rec} AS ({record} RETURNING {id}, {version}), {ev} AS ({event} RETURNING {id}, {record_id}){cte} \
                 SELECT {ev}.{record_id}, {ev}.{id} FROM {ev}{from}"
            )
        };
        let transition = |state, with_notify| {
            let mut p = Params::<Self>::new();
            let update = render::update_record(def, state, &mut p);
            let event = render::insert_event_select(def, "upd", &mut p);
            let (cte, from) = notify(&mut p, with_notify);
            format!(
                "WITH {upd} AS ({update} RETURNING {}), {ev} AS ({event} RETURNING {id}){cte} \
                 SELECT {upd}.*, {ev}.{id} FROM {upd}, {ev}{from}",
                render::record_columns::<Self>(def)
            )
        };
        let by_id = |state: &'static crate::schema::StateDef, with_notify| {
            let (old, t, from) = (q("old"), q("t"), q("sf_from"));
            let (table, status) = (q(def.table), q("status"));
            let mut p = Params::<Self>::new();
            let mut sets = vec![
                format!("{status} = {}", p.next()),
                format!("{version} = {t}.{version} + 1"),
                format!("{} = {}", q("updated_at"), p.next()),
            ];
            sets.extend(state.fields.iter().map(|f| format!("{} = {}", q(f), p.next())));
            let key = p.next();
            let names: Vec<String> = render::source_names(def, state).map(|_| p.next()).collect();
            // The event records the state's current name, whatever the row still holds.
            let whens: Vec<String> = names.iter().map(|stored| format!("WHEN {stored} THEN {}", p.next())).collect();
            let from_name = if whens.is_empty() {
                "NULL".to_owned()
            } else {
                format!("CASE {old}.{status} {} END", whens.join(" "))
            };
            let (kind, to, payload, metadata, at) = (p.next(), p.next(), p.next(), p.next(), p.next());
            let schema = p.next();
            let (cte, notify_from) = notify(&mut p, with_notify);
            let columns: Vec<&str> =
                crate::schema::RESERVED_COLUMNS.into_iter().chain(def.columns.iter().map(|c| c.name)).collect();
            let of = |table: &str| columns.iter().map(|c| format!("{table}.{}", q(c))).collect::<Vec<_>>().join(", ");
            // No source, no row can be in one: the statement changes nothing.
            let guard =
                if names.is_empty() { "FALSE".to_owned() } else { format!("{status} IN ({})", names.join(", ")) };
            format!(
                "WITH {old} AS (SELECT {id}, {status} FROM {table} WHERE {id} = {key} AND {guard} FOR UPDATE), \
                 {upd} AS (UPDATE {table} AS {t} SET {} FROM {old} WHERE {t}.{id} = {old}.{id} \
                 RETURNING {}, {from_name} AS {from}), \
                 {ev} AS (INSERT INTO {} ({}) SELECT {id}, {kind}, {from}, {to}, {version}, {payload}, {metadata}, {at}, {schema} \
                 FROM {upd} RETURNING {id}){cte} \
                 SELECT {}, {ev}.{id} FROM {upd}, {ev}{notify_from}",
                sets.join(", "),
                of(&t),
                q(def.events_table),
                render::list::<Self>(&render::EVENT_COLUMNS[1..]),
                of(&upd),
            )
        };
        let mut transition_types = render::row_types(def);
        transition_types.push(LogicalType::I64);
        let per_state = |render: &dyn Fn(&'static crate::schema::StateDef, bool) -> String, with_notify| {
            def.states.iter().map(|s| render(s, with_notify)).collect()
        };
        PostgresPlan {
            insert: [per_state(&insert, false), per_state(&insert, true)],
            transition: [per_state(&transition, false), per_state(&transition, true)],
            by_id: [per_state(&by_id, false), per_state(&by_id, true)],
            transition_types,
        }
    }

    super::query_methods!();

    async fn write(conn: &mut Conn<Self>, plan: &PostgresPlan, write: &Write) -> Result<Option<Written>, sqlx::Error> {
        let variant = usize::from(write.notify.is_some());
        let notify = write.notify.as_ref().map(|channel| (channel, LogicalType::Text));
        if write.is_insert() {
            let mut binds = write.record_binds();
            binds.extend(write.event_select_binds());
            binds.extend(notify);
            let types = [write.id_type, LogicalType::I64];
            let row = super::fetch_optional::<Self>(conn, &plan.insert[variant][write.state], &binds, &types).await?;
            let mut row = row.ok_or(sqlx::Error::RowNotFound)?.into_iter();
            let (id, position) = (row.next().unwrap_or(Value::Null), row.next().unwrap_or(Value::Null));
            return Ok(Some(Written { id, row: None, position: super::position(position)? }));
        }
        let (binds, sql) = if write.sources.is_some() {
            let mut binds = write.by_id_binds();
            binds.extend(notify);
            (binds, &plan.by_id[variant][write.state])
        } else {
            let mut binds = write.update_binds();
            binds.extend(write.event_select_binds());
            binds.extend(notify);
            (binds, &plan.transition[variant][write.state])
        };
        let row = super::fetch_optional::<Self>(conn, sql, &binds, &plan.transition_types).await?;
        let Some(mut row) = row else { return Ok(None) };
        let position = super::position(row.pop().unwrap_or(Value::Null))?;
        Ok(Some(Written { id: row[0].clone(), row: Some(row), position }))
    }

    /// Transaction fencing on `tx xid8`.
    type Log = PostgresLog;

    const NOW_MILLIS: &'static str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

    async fn execute_with(conn: &mut Conn<Self>, sql: &str, binds: &[Bind<'_>]) -> Result<u64, sqlx::Error> {
        Ok(super::execute::<Self>(conn, sql, binds).await?.rows_affected())
    }

    fn insert_if_absent(table: &str, columns: &[&str], values: &[String], _key: &str) -> String {
        render::insert_if_absent::<Self>(table, columns, values, " ON CONFLICT DO NOTHING")
    }

    const NOTIFIES: bool = true;

    const COLUMNS_SQL: &'static str = "SELECT lower(column_name::text) FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1";
    const INDEXES_SQL: &'static str =
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1";

    async fn listen(pool: &Pool<Self::Db>, channel: &str) -> Result<Option<WakeUps>, sqlx::Error> {
        listen::subscribe(pool, channel).await.map(Some)
    }

    fn classify(error: &sqlx::Error) -> Failure {
        let Some(db) = error.as_database_error() else { return Failure::Other };
        match db.code().as_deref() {
            Some("23505") => Failure::Unique,
            // `relation "orders" does not exist`
            Some("42P01") => Failure::MissingTable(db.message().split('"').nth(1).unwrap_or(db.message()).to_owned()),
            // `column "days" does not exist`, `column "days" of relation "loans" does not exist`
            Some("42703") => Failure::MissingColumn(db.message().split('"').nth(1).unwrap_or(db.message()).to_owned()),
            // A NUL in text (22021) or in a JSON string (22P05).
            Some("22021" | "22P05") => Failure::Unrepresentable,
            _ => Failure::Other,
        }
    }
}

impl Codec for Postgres {
    fn bind(args: &mut PgArguments, value: &Value, ty: LogicalType) -> Result<(), BoxDynError> {
        match value {
            // PostgreSQL types every parameter: a NULL carries its column's type.
            Value::Null => match ty {
                LogicalType::Bool => args.add(Option::<bool>::None),
                LogicalType::I32 => args.add(Option::<i32>::None),
                LogicalType::I64 => args.add(Option::<i64>::None),
                LogicalType::F64 => args.add(Option::<f64>::None),
                LogicalType::Text => args.add(Option::<&str>::None),
                LogicalType::Bytes => args.add(Option::<&[u8]>::None),
                LogicalType::Timestamp => args.add(Option::<DateTime<Utc>>::None),
                LogicalType::Uuid => args.add(Option::<Uuid>::None),
                LogicalType::Json => args.add(Option::<Json<&serde_json::Value>>::None),
            },
            Value::Bool(v) => args.add(*v),
            Value::I32(v) => args.add(*v),
            Value::I64(v) => args.add(*v),
            Value::F64(v) => args.add(*v),
            Value::Text(v) => args.add(v.as_str()),
            Value::Bytes(v) => args.add(v.as_slice()),
            Value::Timestamp(v) => args.add(*v),
            Value::Uuid(v) => args.add(*v),
            Value::Json(v) => args.add(Json(v)),
        }
    }

    fn read(row: &PgRow, i: usize, ty: LogicalType) -> Result<Value, sqlx::Error> {
        let value = match ty {
            LogicalType::Bool => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
            LogicalType::I32 => row.try_get::<Option<i32>, _>(i)?.map(Value::I32),
            LogicalType::I64 if row.column(i).type_info().name().eq_ignore_ascii_case("xid8") => xid8(row, i)?,
            LogicalType::I64 => row.try_get::<Option<i64>, _>(i)?.map(Value::I64),
            LogicalType::F64 => row.try_get::<Option<f64>, _>(i)?.map(Value::F64),
            // A JSON column read as text gives its JSON text.
            LogicalType::Text if row.column(i).type_info().name().starts_with("JSON") => {
                row.try_get::<Option<Json<&RawValue>>, _>(i)?.map(|json| Value::Text(json.0.get().to_owned()))
            }
            LogicalType::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
            LogicalType::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
            LogicalType::Timestamp => row.try_get::<Option<DateTime<Utc>>, _>(i)?.map(Value::Timestamp),
            LogicalType::Uuid => row.try_get::<Option<Uuid>, _>(i)?.map(Value::Uuid),
            LogicalType::Json => row.try_get::<Option<Json<serde_json::Value>>, _>(i)?.map(|json| Value::Json(json.0)),
        };
        Ok(value.unwrap_or(Value::Null))
    }
}

/// A transaction id (`xid8`, which sqlx does not know) as a number: eight
/// bytes, big-endian, in the binary format; its digits in the text format.
fn xid8(row: &PgRow, i: usize) -> Result<Option<Value>, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(None);
    }
    let decode = |source: BoxDynError| sqlx::Error::ColumnDecode { index: i.to_string(), source };
    let number = match raw.format() {
        PgValueFormat::Binary => {
            let bytes: [u8; 8] =
                raw.as_bytes().map_err(decode)?.try_into().map_err(|_| decode("xid8 is not 8 bytes".into()))?;
            u64::from_be_bytes(bytes)
        }
        PgValueFormat::Text => {
            raw.as_str().map_err(decode)?.parse().map_err(|e: std::num::ParseIntError| decode(e.into()))?
        }
    };
    // Transaction ids stay far below 2^63 (epoch and 32-bit xid).
    i64::try_from(number).map(|n| Some(Value::I64(n))).map_err(|e| decode(e.into()))
}
