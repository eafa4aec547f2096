//! The derive's input as a model: syn -> [`Machine`], keeping source tokens
//! for spans. Shape errors (not an enum, generics, tuple variants) are
//! recorded here; rules across states live in `check`.

use crate::attr;
use crate::ctxt::Ctxt;
use heck::ToSnakeCase;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitStr, Type};

pub(crate) struct Machine<'a> {
    pub(crate) original: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    pub(crate) doc: String,
    pub(crate) table: Name,
    pub(crate) events_table: Name,
    /// `Some` when callers supply keys (`#[machine(id = ..)]`).
    pub(crate) id: Option<Type>,
    /// The path of the runtime crate's root: `::statefold::__private::runtime`
    /// unless `#[machine(crate = "..")]` names another way to `statefold`.
    pub(crate) krate: proc_macro2::TokenStream,
    pub(crate) states: Vec<State<'a>>,
    /// Some variants were not states (reported): matches need a catch-all arm.
    pub(crate) incomplete: bool,
}

pub(crate) struct State<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) docs: Vec<&'a Attribute>,
    pub(crate) doc: String,
    pub(crate) db_name: Name,
    pub(crate) was: Vec<Name>,
    pub(crate) initial: bool,
    /// Source states as written; `check` drops unknown ones.
    pub(crate) from: Vec<Ident>,
    /// Its `#[from]` could not be read (already reported).
    pub(crate) from_unreadable: bool,
    pub(crate) unit: bool,
    pub(crate) fields: Vec<Field<'a>>,
    /// Accepted `#[serde(..)]` attributes, passed on to the event struct.
    pub(crate) serde: Vec<&'a Attribute>,
    /// The event's current version (`#[event(version = N)]`, else 1).
    pub(crate) version: u32,
    /// One upcaster per earlier version, by the version it reads, in order.
    pub(crate) upcasts: Vec<(u32, syn::Path)>,
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    /// The column name: the field name without `r#`.
    pub(crate) name: String,
    pub(crate) docs: Vec<&'a Attribute>,
    pub(crate) ty: &'a Type,
    /// `#[column(json)]`.
    pub(crate) json_column: bool,
    /// `#[column(index)]`, kept for its span.
    pub(crate) index: Option<syn::Path>,
    /// Accepted `#[serde(..)]` attributes, passed on to the event struct's field.
    pub(crate) serde: Vec<&'a Attribute>,
    /// The field's name in the event's JSON payload.
    pub(crate) json: Name,
    /// Further payload names it is read under (`#[serde(alias = "..")]`).
    pub(crate) aliases: Vec<Name>,
    /// `#[serde(default)]`: a payload without it still decodes.
    pub(crate) default: bool,
}

/// A name used in SQL, with the span to blame when it is invalid.
pub(crate) struct Name {
    pub(crate) value: String,
    pub(crate) span: proc_macro2::Span,
    /// Whether the user wrote it (else it was derived from a Rust name).
    pub(crate) explicit: bool,
}

impl Name {
    fn explicit(lit: &LitStr) -> Self {
        Self { value: lit.value(), span: lit.span(), explicit: true }
    }

    fn derived(value: String, span: proc_macro2::Span) -> Self {
        Self { value, span, explicit: false }
    }
}

impl<'a> Machine<'a> {
    /// Builds the model, or `None` when the input is not a machine at all.
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let data = match &input.data {
            Data::Enum(data) => data,
            Data::Struct(data) => {
                cx.error_spanned_by(
                    data.struct_token,
                    "`#[derive(Machine)]` applies to enums: each variant is a state, e.g. `enum Order { #[initial] Placed { .. }, #[from(Placed)] Paid }`",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error_spanned_by(data.union_token, "`#[derive(Machine)]` applies to enums, not unions");
                return None;
            }
        };
        let mut generic = false;
        for param in &input.generics.params {
            let what = match param {
                syn::GenericParam::Lifetime(_) => "lifetime parameters",
                syn::GenericParam::Type(_) => "type parameters",
                syn::GenericParam::Const(_) => "const parameters",
            };
            cx.error_spanned_by(
                param,
                format_args!("`#[derive(Machine)]` does not support {what}: a machine's events are stored, so they own their data"),
            );
            generic = true;
        }
        if let Some(clause) = &input.generics.where_clause {
            cx.error_spanned_by(clause, "`#[derive(Machine)]` does not support `where` clauses");
            generic = true;
        }

        let attrs = attr::machine_attrs(cx, &input.attrs);
        // `#[serde(..)]` on the enum is left to a serde derive of the enum
        // itself: a derive cannot see the others, so it cannot tell whether
        // there is one, and refusing it would break that derive.
        let (_, doc) = attr::docs(&input.attrs);
        let snake = input.ident.to_string().to_snake_case();
        let table =
            attrs.table.as_ref().map_or_else(|| Name::derived(snake.clone(), input.ident.span()), Name::explicit);
        let events_table = attrs
            .events_table
            .as_ref()
            .map_or_else(|| Name::derived(format!("{snake}_events"), input.ident.span()), Name::explicit);
        let states: Vec<State<'a>> = data.variants.iter().filter_map(|v| State::from_syn(cx, v)).collect();
        let incomplete = states.len() < data.variants.len();
        if generic {
            return None;
        }
        // The runtime as generated code reaches it, spanned at `crate = ".."` when given.
        let krate = attrs.krate.map_or_else(
            || quote::quote!(::statefold::__private::runtime),
            |path| {
                let span = syn::spanned::Spanned::span(&path);
                quote::quote_spanned!(span=> #path::__private::runtime)
            },
        );
        Some(Self {
            original: input,
            ident: &input.ident,
            doc,
            table,
            events_table,
            id: attrs.id,
            krate,
            states,
            incomplete,
        })
    }
}

impl<'a> State<'a> {
    fn from_syn(cx: &Ctxt, variant: &'a syn::Variant) -> Option<Self> {
        let attrs = attr::state_attrs(cx, &variant.attrs);
        let serde = attr::serde_state(cx, &variant.attrs);
        let (version, upcasts) = event_versions(cx, attr::event_attrs(cx, &variant.attrs));
        let (docs, doc) = attr::docs(&variant.attrs);
        if let Some((eq, _)) = &variant.discriminant {
            cx.error_spanned_by(eq, "states cannot have explicit discriminants: the database stores their names");
        }
        let (unit, fields) = match &variant.fields {
            Fields::Unit => (true, Vec::new()),
            Fields::Named(named) => {
                (false, named.named.iter().filter_map(|f| Field::from_syn(cx, f, serde.rename_all)).collect())
            }
            Fields::Unnamed(_) => {
                cx.error_spanned_by(
                    &variant.fields,
                    format_args!(
                        "tuple variant `{}(..)` cannot be a state: name its fields, as in `{} {{ field: Type }}`",
                        variant.ident, variant.ident
                    ),
                );
                return None;
            }
        };
        let db_name = attrs.name.as_ref().map_or_else(
            || Name::derived(variant.ident.to_string().to_snake_case(), variant.ident.span()),
            Name::explicit,
        );
        Some(Self {
            ident: &variant.ident,
            docs,
            doc,
            db_name,
            was: attrs.was.iter().map(Name::explicit).collect(),
            // `#[initial]` misplaced on a field is reported there; the state
            // still counts as initial, so no "no initial state" error follows.
            initial: attrs.initial.is_some() || fields_have(variant, "initial"),
            from: attrs.from,
            from_unreadable: attrs.from_unreadable,
            unit,
            fields,
            serde: serde.attrs,
            version,
            upcasts,
        })
    }
}

/// The event's version and its upcasters, checked: versions start at 1, and
/// each earlier version has exactly one step to the next.
fn event_versions(cx: &Ctxt, attrs: attr::EventAttrs) -> (u32, Vec<(u32, syn::Path)>) {
    let version = match &attrs.version {
        None => 1,
        Some(lit) => match lit.base10_parse::<u32>() {
            Ok(0) => {
                cx.error_spanned_by(lit, "event versions start at 1: an event's first version is 1");
                1
            }
            Ok(v) => v,
            Err(_) => {
                cx.error_spanned_by(lit, "an event version is a whole number from 1, as in `version = 2`");
                1
            }
        },
    };
    if let (None, Some(key)) = (&attrs.version, &attrs.upcast_key) {
        cx.error_spanned_by(key, "`upcast(..)` needs `version = N` beside it: the version its steps lead to");
        return (1, Vec::new());
    }
    let mut steps: Vec<(u32, syn::Path)> = Vec::new();
    for (lit, function) in attrs.upcasts {
        match lit.base10_parse::<u32>() {
            Ok(from) if from >= 1 && from < version => {
                if steps.iter().any(|(f, _)| *f == from) {
                    cx.error_spanned_by(
                        &lit,
                        format_args!("a second upcaster from version {from}: each version has one step to the next"),
                    );
                } else {
                    steps.push((from, function));
                }
            }
            _ => cx.error_spanned_by(
                &lit,
                format_args!(
                    "no upcast from version {}: the current version is {version}, so the steps read versions 1 to {}",
                    lit.base10_digits(),
                    version.saturating_sub(1)
                ),
            ),
        }
    }
    let missing: Vec<u32> = (1..version).filter(|v| !steps.iter().any(|(f, _)| f == v)).collect();
    if let (Some(lit), false) = (&attrs.version, missing.is_empty()) {
        let wanted = missing.iter().map(|v| format!("`{v} => ..`")).collect::<Vec<_>>().join(", ");
        cx.error_spanned_by(
            lit,
            format_args!(
                "version {version} needs an upcaster from each earlier version, to read the events stored at it: add {wanted} to `upcast(..)`"
            ),
        );
    }
    steps.sort_by_key(|(from, _)| *from);
    (version, steps)
}

/// Whether a field of `variant` carries the attribute `name`.
fn fields_have(variant: &syn::Variant, name: &str) -> bool {
    variant.fields.iter().any(|f| f.attrs.iter().any(|a| a.path().is_ident(name)))
}

impl<'a> Field<'a> {
    fn from_syn(cx: &Ctxt, field: &'a syn::Field, rename_all: Option<attr::RenameRule>) -> Option<Self> {
        let ident = field.ident.as_ref()?;
        let attrs = attr::column_attrs(cx, &field.attrs);
        let serde = attr::serde_field(cx, ident, &field.attrs);
        let (docs, _) = attr::docs(&field.attrs);
        let name = syn::ext::IdentExt::unraw(ident).to_string();
        let json = serde.rename.as_ref().map_or_else(
            || Name::derived(rename_all.map_or_else(|| name.clone(), |rule| rule.apply(&name)), ident.span()),
            Name::explicit,
        );
        Some(Self {
            ident,
            name,
            docs,
            ty: &field.ty,
            json_column: attrs.json,
            index: attrs.index,
            serde: serde.attrs,
            json,
            aliases: serde.aliases.iter().map(Name::explicit).collect(),
            default: serde.default,
        })
    }
}
