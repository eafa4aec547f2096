//! SQL text shared by the backends, rendered through each one's quoting and
//! placeholders. Every value is a bind parameter; only identifiers (checked
//! by the derive) and constants are written into the text.

use super::Backend;
use crate::schema::{LogicalType, MachineDef, StateDef, RESERVED_COLUMNS};
use std::marker::PhantomData;

/// Numbers bind parameters in the order they appear in the text.
pub(crate) struct Params<B> {
    count: usize,
    backend: PhantomData<B>,
}

impl<B: Backend> Params<B> {
    pub(crate) fn new() -> Self {
        Self { count: 0, backend: PhantomData }
    }

    pub(crate) fn next(&mut self) -> String {
        self.count += 1;
        B::placeholder(self.count)
    }
}

/// The events table's columns, in the order the store reads them.
/// `schema_version` is the version of the event's payload (1 for tables
/// created before event versions, by the column's default).
pub(crate) const EVENT_COLUMNS: [&str; 10] = [
    "id",
    "record_id",
    "kind",
    "from_status",
    "to_status",
    "version",
    "payload",
    "metadata",
    "created_at",
    "schema_version",
];

/// The types of a records row as the store reads it: header, then payload columns.
pub(crate) fn row_types(def: &MachineDef) -> Vec<LogicalType> {
    let header = [def.id.ty, LogicalType::Text, LogicalType::I64, LogicalType::Timestamp, LogicalType::Timestamp];
    header.into_iter().chain(def.columns.iter().map(|c| c.ty)).collect()
}

/// The types of an events row, in [`EVENT_COLUMNS`] order.
///
/// The payload and metadata are read as their JSON text, to be decoded once,
/// straight into the event and [`Metadata`](crate::Metadata) types.
pub(crate) fn event_types(def: &MachineDef) -> Vec<LogicalType> {
    use LogicalType::{Text, Timestamp, I64};
    vec![I64, def.id.ty, Text, Text, Text, I64, Text, Text, Timestamp, I64]
}

/// Quoted, comma-separated identifiers.
pub(crate) fn list<B: Backend>(idents: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    idents.into_iter().map(|i| B::quote_ident(i.as_ref())).collect::<Vec<_>>().join(", ")
}

/// Every column of the records table, in the order the store reads them.
pub(crate) fn record_columns<B: Backend>(def: &MachineDef) -> String {
    list::<B>(RESERVED_COLUMNS.into_iter().chain(def.columns.iter().map(|c| c.name)))
}

/// The name of the records table's status constraint.
pub(crate) fn status_check_name(def: &MachineDef) -> String {
    format!("{}_status_check", def.table)
}

/// The name of the events table's `UNIQUE (record_id, version)` constraint.
pub(crate) fn event_version_key_name(def: &MachineDef) -> String {
    format!("{}_record_version_key", def.events_table)
}

/// The name of the `(status, id)` index.
pub(crate) fn status_index_name(def: &MachineDef) -> String {
    format!("{}_status_idx", def.table)
}

/// The name of a `#[column(index)]` index.
pub(crate) fn column_index_name(def: &MachineDef, column: &str) -> String {
    format!("{}_{column}_idx", def.table)
}

/// `CREATE INDEX IF NOT EXISTS` for `(status, id)` and every `#[column(index)]`
/// column, in the syntax PostgreSQL and SQLite share.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn create_indexes<B: Backend>(def: &MachineDef) -> Vec<String> {
    let table = B::quote_ident(def.table);
    let status = format!(
        "CREATE INDEX IF NOT EXISTS {} ON {table} ({})",
        B::quote_ident(&status_index_name(def)),
        list::<B>(["status", "id"])
    );
    let columns = def.columns.iter().filter(|c| c.indexed).map(|c| {
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {table} ({})",
            B::quote_ident(&column_index_name(def, c.name)),
            B::quote_ident(c.name)
        )
    });
    std::iter::once(status).chain(columns).collect()
}

/// `INSERT INTO records (..) VALUES (..)`, binds `[id], status, at, at, columns`
/// (see [`Write::record_binds`](super::Write::record_binds)).
pub(crate) fn insert_record<B: Backend>(def: &MachineDef, state: &StateDef, p: &mut Params<B>) -> String {
    let id = (!def.id.generated).then_some("id");
    let columns =
        id.into_iter().chain(["status", "version", "created_at", "updated_at"]).chain(state.fields.iter().copied());
    let mut values = Vec::new();
    if id.is_some() {
        values.push(p.next());
    }
    values.push(p.next());
    values.push("1".to_owned());
    values.push(p.next());
    values.push(p.next());
    values.extend(state.fields.iter().map(|_| p.next()));
    format!("INSERT INTO {} ({}) VALUES ({})", B::quote_ident(def.table), list::<B>(columns), values.join(", "))
}

/// The stored names (current and earlier) of every state `state` may be
/// entered from, each with its state's current name: what a transition by
/// id accepts the row in.
pub(crate) fn source_names<'d>(
    def: &'d MachineDef,
    state: &'d StateDef,
) -> impl Iterator<Item = (&'static str, &'static str)> + 'd {
    def.sources_of(state.name).filter_map(|name| def.state(name)).flat_map(|source| {
        std::iter::once(source.db_name).chain(source.was.iter().copied()).map(|stored| (stored, source.db_name))
    })
}

/// How many names a state's guard compares with: its stored name and its
/// earlier ones, for the state with the most.
pub(crate) fn guard_names(def: &MachineDef) -> usize {
    def.states.iter().map(|s| 1 + s.was.len()).max().unwrap_or(1)
}

/// The guarded `UPDATE`: only a row still at the expected status (under its
/// stored name or an earlier one: rows the migration has not renamed yet)
/// and version changes. Binds `status, at, columns, id, from names, version`
/// (see [`Write::update_binds`](super::Write::update_binds)).
pub(crate) fn update_record<B: Backend>(def: &MachineDef, state: &StateDef, p: &mut Params<B>) -> String {
    let q = B::quote_ident;
    let mut sets = vec![
        format!("{} = {}", q("status"), p.next()),
        format!("{0} = {0} + 1", q("version")),
        format!("{} = {}", q("updated_at"), p.next()),
    ];
    sets.extend(state.fields.iter().map(|f| format!("{} = {}", q(f), p.next())));
    let id = p.next();
    let names: Vec<String> = (0..guard_names(def)).map(|_| p.next()).collect();
    format!(
        "UPDATE {} SET {} WHERE {} = {id} AND {} IN ({}) AND {} = {}",
        q(def.table),
        sets.join(", "),
        q("id"),
        q("status"),
        names.join(", "),
        q("version"),
        p.next()
    )
}

/// The events table's columns as written (all but the generated position).
fn event_insert_columns<B: Backend>() -> String {
    list::<B>(&EVENT_COLUMNS[1..])
}

/// `INSERT INTO events (..) VALUES (..)`, binds
/// `record_id, kind, from, to, version, payload, metadata, at, schema version`
/// (see [`Write::event_values_binds`](super::Write::event_values_binds)).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn insert_event_values<B: Backend>(def: &MachineDef, p: &mut Params<B>) -> String {
    let values: Vec<String> = (0..EVENT_COLUMNS.len() - 1).map(|_| p.next()).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        B::quote_ident(def.events_table),
        event_insert_columns::<B>(),
        values.join(", ")
    )
}

/// `INSERT INTO events (..) SELECT .. FROM source`, taking the record id and
/// version from `source` (a CTE over the written row). Binds
/// `kind, from, to, payload, metadata, at, schema version`
/// (see [`Write::event_select_binds`](super::Write::event_select_binds)).
#[cfg(feature = "postgres")]
pub(crate) fn insert_event_select<B: Backend>(def: &MachineDef, source: &str, p: &mut Params<B>) -> String {
    let q = B::quote_ident;
    let (kind, from, to) = (p.next(), p.next(), p.next());
    let (payload, metadata, at, schema) = (p.next(), p.next(), p.next(), p.next());
    format!(
        "INSERT INTO {} ({}) SELECT {}, {kind}, {from}, {to}, {}, {payload}, {metadata}, {at}, {schema} FROM {}",
        q(def.events_table),
        event_insert_columns::<B>(),
        q("id"),
        q("version"),
        q(source)
    )
}

/// The read queries of one machine, rendered once per store.
pub(crate) struct Queries {
    /// Types of a records row as read by `load`, `list` and the audit.
    pub(crate) row_types: Vec<LogicalType>,
    /// Types of a log row as read by `history`, `as_of` and the audit
    /// ([`Log::row_types`](super::log::Log::row_types)).
    pub(crate) event_types: Vec<LogicalType>,
    /// Per state: the position in `DEF.columns` of each of its fields.
    pub(crate) state_columns: Vec<Vec<usize>>,
    /// How many names a transition's guard binds ([`guard_names`]).
    pub(crate) guard_names: usize,
    /// One row by id. Binds: id.
    pub(crate) load: String,
    /// A row's status and version by id. Binds: id.
    pub(crate) head: String,
    /// Per state, the first page of rows in it. Binds: its stored names, limit.
    pub(crate) list_first: Vec<String>,
    /// Per state, the page after an id. Binds: its stored names, id, limit.
    pub(crate) list_after: Vec<String>,
    /// One record's events. Binds: id.
    pub(crate) history: String,
    /// One record's events up to a time. Binds: id, time.
    pub(crate) history_until: String,
    /// The audit's first page of rows. Binds: limit.
    pub(crate) audit_rows_first: String,
    /// The audit's page of rows after an id. Binds: id, limit.
    pub(crate) audit_rows_after: String,
    /// One row by id, locked until the transaction ends (repairs). Binds: id.
    pub(crate) lock: String,
    /// Rewrites a whole row, if it is still at the version and status read.
    /// Binds: status, version, created_at, updated_at, columns, id, version, status.
    pub(crate) repair: String,
    /// Records a repair. Binds: records table, record id, actor, before, after, at.
    pub(crate) record_repair: String,
    /// The events of records in an id range, by which bounds are given:
    /// `[none, upper, lower, both]`. Binds: lower, upper (when given).
    pub(crate) audit_events: [String; 4],
}

impl Queries {
    pub(crate) fn new<B: Backend>(def: &MachineDef) -> Self {
        let q = B::quote_ident;
        let (table, events) = (q(def.table), q(def.events_table));
        let rows = record_columns::<B>(def);
        let event_columns = <B::Log as super::log::Log<B>>::columns();
        let (id, status, record_id, version) = (q("id"), q("status"), q("record_id"), q("version"));
        let by_id = |select: &str| format!("SELECT {select} FROM {table} WHERE {id} = {}", B::placeholder(1));
        let list_sql = |state: &StateDef, after: bool| {
            let mut p = Params::<B>::new();
            let names: Vec<String> =
                std::iter::once(state.db_name).chain(state.was.iter().copied()).map(|_| p.next()).collect();
            let after = if after { format!(" AND {id} > {}", p.next()) } else { String::new() };
            format!(
                "SELECT {rows} FROM {table} WHERE {status} IN ({}){after} ORDER BY {id} LIMIT {}",
                names.join(", "),
                p.next()
            )
        };
        let history = format!("SELECT {event_columns} FROM {events} WHERE {record_id} = {}", B::placeholder(1));
        let audit_events = |lower: bool, upper: bool| {
            let mut p = Params::<B>::new();
            let mut bounds = Vec::new();
            if lower {
                bounds.push(format!("{record_id} > {}", p.next()));
            }
            if upper {
                bounds.push(format!("{record_id} <= {}", p.next()));
            }
            let filter = if bounds.is_empty() { String::new() } else { format!(" WHERE {}", bounds.join(" AND ")) };
            format!("SELECT {event_columns} FROM {events}{filter} ORDER BY {record_id}, {version}")
        };
        Self {
            row_types: row_types(def),
            event_types: <B::Log as super::log::Log<B>>::row_types(def),
            guard_names: guard_names(def),
            state_columns: def
                .states
                .iter()
                .map(|s| s.fields.iter().filter_map(|f| def.column_index(f)).collect())
                .collect(),
            load: by_id(&rows),
            head: by_id(&list::<B>(["status", "version"])),
            list_first: def.states.iter().map(|s| list_sql(s, false)).collect(),
            list_after: def.states.iter().map(|s| list_sql(s, true)).collect(),
            history: format!("{history} ORDER BY {version}"),
            history_until: format!("{history} AND {} <= {} ORDER BY {version}", q("created_at"), B::placeholder(2)),
            lock: format!("{}{}", by_id(&rows), B::FOR_UPDATE),
            repair: {
                let mut p = Params::<B>::new();
                let sets: Vec<String> = ["status", "version", "created_at", "updated_at"]
                    .into_iter()
                    .chain(def.columns.iter().map(|c| c.name))
                    .map(|c| format!("{} = {}", q(c), p.next()))
                    .collect();
                let key = p.next();
                let (version_was, status_was) = (p.next(), p.next());
                format!(
                    "UPDATE {table} SET {} WHERE {id} = {key} AND {version} = {version_was} AND {status} = {status_was}",
                    sets.join(", ")
                )
            },
            record_repair: {
                let mut p = Params::<B>::new();
                let columns = ["records_table", "record_id", "actor", "before", "after", "created_at"];
                let values: Vec<String> = columns.iter().map(|_| p.next()).collect();
                format!("INSERT INTO {} ({}) VALUES ({})", q(REPAIRS), list::<B>(columns), values.join(", "))
            },
            audit_rows_first: format!("SELECT {rows} FROM {table} ORDER BY {id} LIMIT {}", B::placeholder(1)),
            audit_rows_after: format!(
                "SELECT {rows} FROM {table} WHERE {id} > {} ORDER BY {id} LIMIT {}",
                B::placeholder(1),
                B::placeholder(2)
            ),
            audit_events: [
                audit_events(false, false),
                audit_events(false, true),
                audit_events(true, false),
                audit_events(true, true),
            ],
        }
    }
}

/// `CREATE TABLE IF NOT EXISTS name (elements) suffix`, one element a line.
pub(crate) fn create_table<B: Backend>(name: &str, elements: &[String], suffix: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS {} (\n    {}\n){suffix}", B::quote_ident(name), elements.join(",\n    "))
}

/// The records table's elements between its key and its constraints: the
/// bookkeeping columns (`status` of `status_type`, `version`, `created_at`,
/// `updated_at`), then one per payload column.
pub(crate) fn record_body<B: Backend>(def: &MachineDef, status_type: &str) -> Vec<String> {
    let q = B::quote_ident;
    let time = B::column_type(LogicalType::Timestamp);
    let mut elements = vec![
        format!("{} {status_type} NOT NULL", q("status")),
        format!("{} {} NOT NULL", q("version"), B::column_type(LogicalType::I64)),
        format!("{} {time} NOT NULL", q("created_at")),
        format!("{} {time} NOT NULL", q("updated_at")),
    ];
    elements.extend(def.columns.iter().map(B::column_sql));
    elements
}

/// The events table's elements after its position column: `record_id` (of
/// `key_type`) through `schema_version`, with the name columns of `name_type`.
pub(crate) fn event_body<B: Backend>(key_type: &str, name_type: &str) -> Vec<String> {
    let q = B::quote_ident;
    let (int, json, time) =
        (B::column_type(LogicalType::I64), B::column_type(LogicalType::Json), B::column_type(LogicalType::Timestamp));
    vec![
        format!("{} {key_type} NOT NULL", q("record_id")),
        format!("{} {name_type} NOT NULL", q("kind")),
        format!("{} {name_type}", q("from_status")),
        format!("{} {name_type} NOT NULL", q("to_status")),
        format!("{} {int} NOT NULL", q("version")),
        format!("{} {json} NOT NULL", q("payload")),
        format!("{} {json} NOT NULL", q("metadata")),
        format!("{} {time} NOT NULL", q("created_at")),
        schema_version_column::<B>(),
    ]
}

/// The events table's `schema_version` column: events written before it
/// existed are at version 1.
pub(crate) fn schema_version_column<B: Backend>() -> String {
    format!("{} {} NOT NULL DEFAULT 1", B::quote_ident("schema_version"), B::column_type(LogicalType::I64))
}

/// The events table's `UNIQUE (record_id, version)` constraint, which also
/// serves every per-record read as an index.
pub(crate) fn event_version_key<B: Backend>(def: &MachineDef) -> String {
    format!(
        "CONSTRAINT {} UNIQUE ({})",
        B::quote_ident(&event_version_key_name(def)),
        list::<B>(["record_id", "version"])
    )
}

/// The table of consumer cursors.
pub(crate) const CURSORS: &str = "statefold_cursors";
/// The table of consumer leases.
pub(crate) const LEASES: &str = "statefold_leases";
/// The table of events consumers gave up on.
pub(crate) const DEAD_LETTERS: &str = "statefold_dead_letters";
/// The table of rows repaired from their events.
pub(crate) const REPAIRS: &str = "statefold_repairs";

/// The table of idempotency keys and the outcomes of the effects run under them.
pub(crate) const IDEMPOTENCY: &str = "statefold_idempotency";
/// The table of messages and requests waiting to be sent.
pub(crate) const OUTBOX: &str = "statefold_outbox";

/// The shared tables of consumers, repairs and effects ([`Backend::support_tables_sql`]): `key`
/// is the type of names that are part of a key, `serial` the definition of
/// the dead letters' generated `id`, `suffix` the table options.
pub(crate) fn support_tables<B: Backend>(key: &str, serial: &str, suffix: &str) -> Vec<String> {
    let q = B::quote_ident;
    let (int, text, json, time) = (
        B::column_type(LogicalType::I64),
        B::column_type(LogicalType::Text),
        B::column_type(LogicalType::Json),
        B::column_type(LogicalType::Timestamp),
    );
    let stream = [format!("{} {key} NOT NULL", q("stream")), format!("{} {key} NOT NULL", q("consumer"))];
    let primary = format!("PRIMARY KEY ({})", list::<B>(["stream", "consumer"]));
    let mut cursors = stream.to_vec();
    cursors.extend([
        format!("{} {int} NOT NULL", q("tx")),
        format!("{} {int} NOT NULL", q("position")),
        format!("{} {time} NOT NULL", q("updated_at")),
        primary.clone(),
    ]);
    let mut leases = stream.to_vec();
    leases.extend([format!("{} {key} NOT NULL", q("owner")), format!("{} {int} NOT NULL", q("expires_at")), primary]);
    let mut dead = vec![serial.to_owned()];
    dead.extend(stream);
    dead.extend([
        format!("{} {int} NOT NULL", q("tx")),
        format!("{} {int} NOT NULL", q("position")),
        format!("{} {text} NOT NULL", q("record_id")),
        format!("{} {key} NOT NULL", q("kind")),
        format!("{} {json} NOT NULL", q("payload")),
        format!("{} {json} NOT NULL", q("metadata")),
        format!("{} {text} NOT NULL", q("error")),
        format!("{} {int} NOT NULL", q("attempts")),
        format!("{} {time} NOT NULL", q("created_at")),
    ]);
    let repairs = vec![
        serial.to_owned(),
        format!("{} {key} NOT NULL", q("records_table")),
        format!("{} {text} NOT NULL", q("record_id")),
        format!("{} {text} NOT NULL", q("actor")),
        format!("{} {json} NOT NULL", q("before")),
        format!("{} {json} NOT NULL", q("after")),
        format!("{} {time} NOT NULL", q("created_at")),
    ];
    let keys = vec![
        format!("{} {key} NOT NULL PRIMARY KEY", q("key")),
        format!("{} {json}", q("outcome")),
        format!("{} {time} NOT NULL", q("created_at")),
        format!("{} {int} NOT NULL", q("expires_at")),
    ];
    let outbox = vec![
        serial.to_owned(),
        format!("{} {key} NOT NULL", q("message_id")),
        format!("{} {key} NOT NULL", q("kind")),
        format!("{} {text} NOT NULL", q("key")),
        format!("{} {json} NOT NULL", q("body")),
        format!("{} {key}", q("idempotency_key")),
        format!("{} {int} NOT NULL", q("attempts")),
        format!("{} {int} NOT NULL", q("available_at")),
        format!("{} {int} NOT NULL", q("state")),
        format!("{} {text}", q("error")),
        format!("{} {time} NOT NULL", q("created_at")),
    ];
    vec![
        create_table::<B>(CURSORS, &cursors, suffix),
        create_table::<B>(LEASES, &leases, suffix),
        create_table::<B>(DEAD_LETTERS, &dead, suffix),
        create_table::<B>(REPAIRS, &repairs, suffix),
        create_table::<B>(IDEMPOTENCY, &keys, suffix),
        create_table::<B>(OUTBOX, &outbox, suffix),
    ]
}

/// `INSERT .. VALUES ..` followed by `on_conflict`, which makes it do nothing
/// when the key exists.
pub(crate) fn insert_if_absent<B: Backend>(
    table: &str,
    columns: &[&str],
    values: &[String],
    on_conflict: &str,
) -> String {
    format!(
        "INSERT INTO {} ({}) VALUES ({}){on_conflict}",
        B::quote_ident(table),
        list::<B>(columns.iter().copied()),
        values.join(", ")
    )
}
