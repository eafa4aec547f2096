//! Rules across the whole declaration. Each violation is a spanned error in
//! the [`Ctxt`]; the returned [`Analysis`] keeps only what is valid, so the
//! expansion still compiles and the user sees no follow-on errors.

use crate::ast::{Field, Machine, Name};
use crate::ctxt::Ctxt;
use quote::ToTokens;
use std::collections::{HashMap, VecDeque};

const RESERVED: [&str; 5] = ["id", "status", "version", "created_at", "updated_at"];
/// PostgreSQL's identifier limit, the smallest of the three backends.
const MAX_IDENT: usize = 63;

/// What the expansion needs beyond the model.
pub(crate) struct Analysis<'m, 'a> {
    /// One per column name, at its first declaration.
    pub(crate) columns: Vec<Column<'m, 'a>>,
    /// Valid edges as `(from, to)` state indices, grouped by target.
    pub(crate) edges: Vec<(usize, usize)>,
}

pub(crate) struct Column<'m, 'a> {
    pub(crate) field: &'m Field<'a>,
    /// Every initial state sets it, so rows always have a value.
    pub(crate) set_on_insert: bool,
    /// The states whose events set it, in declaration order.
    pub(crate) states: Vec<usize>,
    /// Some declaration asks for an index.
    pub(crate) indexed: bool,
}

pub(crate) fn check<'m, 'a>(cx: &Ctxt, machine: &'m Machine<'a>) -> Analysis<'m, 'a> {
    check_sql_names(cx, machine);
    check_derived_names(cx, machine);
    let (edges, unresolved) = check_edges(cx, machine);
    if machine.states.is_empty() {
        cx.error_spanned_by(
            machine.ident,
            format_args!("`{}` has no states: add variants, at least one of them `#[initial]`", machine.ident),
        );
    } else if !machine.states.iter().any(|s| s.initial) {
        cx.error_spanned_by(
            machine.ident,
            format_args!("`{}` has no `#[initial]` state: mark the states records may be created in", machine.ident),
        );
    } else {
        check_reachable(cx, machine, &edges, &unresolved);
    }
    let columns = check_columns(cx, machine);
    check_payload_names(cx, machine);
    Analysis { columns, edges }
}

/// Within one event, every payload name (renamed, or an alias) reads one field.
fn check_payload_names(cx: &Ctxt, machine: &Machine<'_>) {
    for state in &machine.states {
        let mut seen: HashMap<&str, &syn::Ident> = HashMap::new();
        for field in &state.fields {
            for name in std::iter::once(&field.json).chain(&field.aliases) {
                match seen.insert(&name.value, field.ident) {
                    Some(first) if first != field.ident => cx.error_at(
                        name.span,
                        format_args!(
                            "payload name `{}` is already taken by `{first}` in `{}`: each name in an event reads one field",
                            name.value, state.ident
                        ),
                    ),
                    Some(_) if name.explicit => cx.error_at(
                        name.span,
                        format_args!("`{}` is already a payload name of `{}`", name.value, field.ident),
                    ),
                    _ => {}
                }
            }
        }
    }
}

fn is_sql_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= MAX_IDENT
}

fn check_sql_names(cx: &Ctxt, machine: &Machine<'_>) {
    for (what, name) in [("table", &machine.table), ("events table", &machine.events_table)] {
        if !is_sql_ident(&name.value) {
            let hint = if name.explicit {
                ""
            } else {
                " (derived from the enum's name; set one with `#[machine(table = \"..\", events_table = \"..\")]`)"
            };
            cx.error_at(
                name.span,
                format_args!(
                    "`{}` is not a valid {what} name: use lowercase ASCII letters, digits and `_`, starting with a letter or `_`, at most {MAX_IDENT} bytes{hint}",
                    name.value
                ),
            );
        }
    }
    if machine.table.value == machine.events_table.value {
        cx.error_at(machine.events_table.span, "the events table needs a name of its own, not the records table's");
    }

    let mut seen: HashMap<&str, &syn::Ident> = HashMap::new();
    for state in &machine.states {
        for name in std::iter::once(&state.db_name).chain(&state.was) {
            check_db_name(cx, name, state.ident);
            if let Some(first) = seen.insert(&name.value, state.ident) {
                cx.error_at(
                    name.span,
                    format_args!(
                        "database name `{}` is already used by `{first}`; give this state its own with `#[state(name = \"..\")]`",
                        name.value
                    ),
                );
            }
        }
    }
}

fn check_db_name(cx: &Ctxt, name: &Name, state: &syn::Ident) {
    let valid = !name.value.is_empty()
        && name.value.len() <= MAX_IDENT
        && name.value.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if !valid {
        let hint = if name.explicit {
            String::new()
        } else {
            format!(" (derived from `{state}`; set one with `#[state(name = \"..\")]`)")
        };
        cx.error_at(
            name.span,
            format_args!(
                "`{}` is not a valid database name for a state: use lowercase ASCII letters, digits and `_`, at most {MAX_IDENT} bytes{hint}",
                name.value
            ),
        );
    }
}

/// Suffixes the runtime appends to the records table's name for its
/// constraints and indexes (`backend/render.rs`): `{table}_status_check`,
/// `{table}_status_idx`.
const TABLE_SUFFIXES: [&str; 2] = ["_status_check", "_status_idx"];
/// Suffixes appended to the events table's name: `{events}_record_version_key`,
/// and PostgreSQL's `{events}_tx_idx`.
const EVENTS_SUFFIXES: [&str; 2] = ["_record_version_key", "_tx_idx"];

/// Names the runtime derives from the declared ones must fit too: PostgreSQL
/// silently truncates longer identifiers (two constraints could then share a
/// name) and MySQL refuses them. SQLite's rebuild table name is not checked:
/// SQLite has no length limit.
fn check_derived_names(cx: &Ctxt, machine: &Machine<'_>) {
    let table_ok = is_sql_ident(&machine.table.value);
    let events_ok = is_sql_ident(&machine.events_table.value);
    let too_long = |name: &Name, suffix: &str, key: &str| {
        let what = key.replace('_', " ");
        let derived = format!("{}{suffix}", name.value);
        if derived.len() <= MAX_IDENT {
            return false;
        }
        let hint = if name.explicit {
            String::new()
        } else {
            format!(" (it is derived from the enum's name; set one with `#[machine({key} = \"..\")]`)")
        };
        cx.error_at(
            name.span,
            format_args!(
                "the {what} name `{}` is too long for the names derived from it: `{derived}` is {} bytes, over the {MAX_IDENT} PostgreSQL keeps; give it a name of at most {} bytes{hint}",
                name.value,
                derived.len(),
                MAX_IDENT - suffix.len()
            ),
        );
        true
    };
    let longest = |suffixes: &[&'static str]| suffixes.iter().max_by_key(|s| s.len()).copied().unwrap_or_default();
    if events_ok {
        too_long(&machine.events_table, longest(&EVENTS_SUFFIXES), "events_table");
    }
    // Index names start with the table's: not checked when it is already too long.
    if !table_ok || too_long(&machine.table, longest(&TABLE_SUFFIXES), "table") {
        return;
    }
    for state in &machine.states {
        for field in &state.fields {
            let Some(index) = &field.index else { continue };
            let derived = format!("{}_{}_idx", machine.table.value, field.name);
            if derived.len() > MAX_IDENT {
                cx.error_spanned_by(
                    index,
                    format_args!(
                        "the index on `{}` would be named `{derived}`, {} bytes, over the {MAX_IDENT} PostgreSQL keeps: shorten the field or the table name by {} bytes",
                        field.name,
                        derived.len(),
                        derived.len() - MAX_IDENT
                    ),
                );
            }
        }
    }
}

/// The valid edges, and the states with an unknown source: those are
/// already reported, so reachability takes them as reached.
fn check_edges(cx: &Ctxt, machine: &Machine<'_>) -> (Vec<(usize, usize)>, Vec<usize>) {
    let mut unresolved = Vec::new();
    let names = machine.states.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>().join(", ");
    let mut edges = Vec::new();
    for (to, state) in machine.states.iter().enumerate() {
        let mut listed: Vec<&syn::Ident> = Vec::new();
        for source in &state.from {
            if listed.contains(&source) {
                cx.error_spanned_by(source, format_args!("`{source}` is listed twice in `#[from(..)]`"));
                continue;
            }
            listed.push(source);
            match machine.states.iter().position(|s| s.ident == source) {
                Some(from) => edges.push((from, to)),
                None => {
                    cx.error_spanned_by(
                        source,
                        format_args!(
                            "unknown state `{source}` in `#[from(..)]`; the states of `{}` are: {names}",
                            machine.ident
                        ),
                    );
                    unresolved.push(to);
                }
            }
        }
    }
    (edges, unresolved)
}

fn check_reachable(cx: &Ctxt, machine: &Machine<'_>, edges: &[(usize, usize)], unresolved: &[usize]) {
    let mut reached = vec![false; machine.states.len()];
    let mut queue: VecDeque<usize> = machine
        .states
        .iter()
        .enumerate()
        .filter(|&(i, s)| s.initial || s.from_unreadable || unresolved.contains(&i))
        .map(|(i, _)| i)
        .collect();
    for &i in &queue {
        reached[i] = true;
    }
    while let Some(from) = queue.pop_front() {
        for &(_, to) in edges.iter().filter(|(f, _)| *f == from) {
            if !reached[to] {
                reached[to] = true;
                queue.push_back(to);
            }
        }
    }
    for (state, _) in machine.states.iter().zip(reached).filter(|(_, r)| !r) {
        let why = if state.from.is_empty() {
            "it has neither `#[initial]` nor `#[from(..)]`"
        } else {
            "none of its `#[from(..)]` sources can be reached"
        };
        cx.error_spanned_by(
            state.ident,
            format_args!("state `{}` is unreachable from every `#[initial]` state: {why}", state.ident),
        );
    }
}

fn check_columns<'m, 'a>(cx: &Ctxt, machine: &'m Machine<'a>) -> Vec<Column<'m, 'a>> {
    let initial = machine.states.iter().filter(|s| s.initial).count();
    let mut columns: Vec<Column<'m, 'a>> = Vec::new();
    for (index, state) in machine.states.iter().enumerate() {
        for field in &state.fields {
            if RESERVED.contains(&field.name.as_str()) {
                cx.error_spanned_by(
                    field.ident,
                    format_args!(
                        "`{}` is a reserved column name (every table has {}): rename the field",
                        field.name,
                        RESERVED.join(", ")
                    ),
                );
                continue;
            }
            if !is_sql_ident(&field.name) {
                cx.error_spanned_by(
                    field.ident,
                    format_args!(
                        "`{}` is not a valid column name: use lowercase ASCII letters, digits and `_`, at most {MAX_IDENT} bytes",
                        field.name
                    ),
                );
                continue;
            }
            match columns.iter_mut().find(|c| c.field.name == field.name) {
                None => columns.push(Column { field, set_on_insert: false, states: vec![index], indexed: false }),
                Some(column) => {
                    let first = column.field;
                    let owner = machine.states[column.states[0]].ident;
                    if type_key(first.ty) != type_key(field.ty) {
                        cx.error_spanned_by(
                            field.ty,
                            format_args!(
                                "field `{}` is `{}` in `{owner}` but `{}` here: a field name is one column, so every state must give it the same type",
                                field.name,
                                type_key(first.ty),
                                type_key(field.ty)
                            ),
                        );
                    } else if first.json_column != field.json_column {
                        cx.error_spanned_by(
                            field.ident,
                            format_args!(
                                "field `{}` is {} in `{owner}` but {} here: mark it the same way in every state",
                                field.name,
                                json_word(first.json_column),
                                json_word(field.json_column)
                            ),
                        );
                    }
                    column.states.push(index);
                }
            }
        }
    }
    for column in &mut columns {
        for &s in &column.states {
            for field in machine.states[s].fields.iter().filter(|f| f.name == column.field.name) {
                if let Some(path) = &field.index {
                    column.indexed = true;
                    if column.field.json_column {
                        cx.error_spanned_by(
                            path,
                            format_args!(
                                "`{}` is a JSON column, which not every backend can index: index a plain column instead",
                                field.name
                            ),
                        );
                    }
                }
            }
        }
        let initial_setters = column.states.iter().filter(|&&s| machine.states[s].initial).count();
        column.set_on_insert = initial > 0 && initial_setters == initial;
    }
    columns
}

fn json_word(json: bool) -> &'static str {
    if json {
        "`#[column(json)]`"
    } else {
        "a plain column"
    }
}

/// A type as written, without whitespace, to compare declarations.
pub(crate) fn type_key(ty: &syn::Type) -> String {
    ty.to_token_stream().to_string().replace(' ', "")
}
