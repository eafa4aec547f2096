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
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    /// The column name: the field name without `r#`.
    pub(crate) name: String,
    pub(crate) docs: Vec<&'a Attribute>,
    pub(crate) ty: &'a Type,
    pub(crate) json: bool,
    /// `#[column(index)]`, kept for its span.
    pub(crate) index: Option<syn::Path>,
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
        let (docs, doc) = attr::docs(&variant.attrs);
        if let Some((eq, _)) = &variant.discriminant {
            cx.error_spanned_by(eq, "states cannot have explicit discriminants: the database stores their names");
        }
        let (unit, fields) = match &variant.fields {
            Fields::Unit => (true, Vec::new()),
            Fields::Named(named) => (false, named.named.iter().filter_map(|f| Field::from_syn(cx, f)).collect()),
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
        })
    }
}

/// Whether a field of `variant` carries the attribute `name`.
fn fields_have(variant: &syn::Variant, name: &str) -> bool {
    variant.fields.iter().any(|f| f.attrs.iter().any(|a| a.path().is_ident(name)))
}

impl<'a> Field<'a> {
    fn from_syn(cx: &Ctxt, field: &'a syn::Field) -> Option<Self> {
        let ident = field.ident.as_ref()?;
        let attrs = attr::column_attrs(cx, &field.attrs);
        let (docs, _) = attr::docs(&field.attrs);
        Some(Self {
            ident,
            name: syn::ext::IdentExt::unraw(ident).to_string(),
            docs,
            ty: &field.ty,
            json: attrs.json,
            index: attrs.index,
        })
    }
}
