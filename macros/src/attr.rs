//! Parsing of the derive's attributes. Parsers record errors in the
//! [`Ctxt`] and return what they could read, so one pass reports everything.

use crate::ctxt::Ctxt;
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, LitStr, Token};

/// `#[machine(..)]` on the enum.
#[derive(Default)]
pub(crate) struct MachineAttrs {
    pub(crate) table: Option<LitStr>,
    pub(crate) events_table: Option<LitStr>,
    pub(crate) id: Option<syn::Type>,
    /// `crate = ".."`: the path of the runtime crate, for renamed dependencies and facades.
    pub(crate) krate: Option<syn::Path>,
}

/// The attributes of one variant.
#[derive(Default)]
pub(crate) struct StateAttrs<'a> {
    pub(crate) initial: Option<&'a Attribute>,
    pub(crate) from: Vec<Ident>,
    /// A `#[from]` was written but could not be read: its sources are unknown.
    pub(crate) from_unreadable: bool,
    pub(crate) name: Option<LitStr>,
    pub(crate) was: Vec<LitStr>,
}

/// `#[column(..)]` on a field.
#[derive(Default)]
pub(crate) struct ColumnAttrs {
    pub(crate) json: bool,
    pub(crate) index: Option<syn::Path>,
}

/// Where an attribute was found, to say where it belongs instead.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Enum,
    Variant,
    Field,
}

fn misplaced(cx: &Ctxt, attr: &Attribute, here: Place) -> bool {
    let Some(name) = attr.path().get_ident().map(Ident::to_string) else {
        return false;
    };
    let home = match name.as_str() {
        "machine" => Place::Enum,
        "initial" | "from" | "state" => Place::Variant,
        "column" => Place::Field,
        _ => return false,
    };
    if home == here {
        return false;
    }
    let belongs = match home {
        Place::Enum => "on the enum",
        Place::Variant => "on a variant (a state)",
        Place::Field => "on a field of a variant",
    };
    cx.error_spanned_by(attr, format_args!("`#[{name}]` belongs {belongs}"));
    true
}

/// The string after `key =`, with an example of the expected form on error.
fn lit_str(meta: &syn::meta::ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    let expr: syn::Expr = meta.value()?.parse()?;
    match expr {
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(lit), .. }) => Ok(lit),
        other => Err(syn::Error::new_spanned(other, format_args!("expected a string, as in `{example}`"))),
    }
}

fn set_once<T>(cx: &Ctxt, slot: &mut Option<T>, value: T, path: &syn::Path, attr: &str) {
    if slot.is_some() {
        let key = path.get_ident().map(ToString::to_string).unwrap_or_default();
        cx.error_spanned_by(path, format_args!("duplicate `{key}` in `#[{attr}(..)]`"));
    } else {
        *slot = Some(value);
    }
}

pub(crate) fn machine_attrs(cx: &Ctxt, attrs: &[Attribute]) -> MachineAttrs {
    let mut out = MachineAttrs::default();
    for attr in attrs {
        if misplaced(cx, attr, Place::Enum) || !attr.path().is_ident("machine") {
            continue;
        }
        if let Err(err) = attr.meta.require_list() {
            cx.error_spanned_by(attr, "expected `#[machine(table = \"..\")]`");
            drop(err);
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table") {
                let lit = lit_str(&meta, "table = \"orders\"")?;
                set_once(cx, &mut out.table, lit, &meta.path, "machine");
            } else if meta.path.is_ident("events_table") {
                let lit = lit_str(&meta, "events_table = \"order_events\"")?;
                set_once(cx, &mut out.events_table, lit, &meta.path, "machine");
            } else if meta.path.is_ident("id") {
                let value = meta.value()?;
                if value.peek(LitStr) {
                    let lit: LitStr = value.parse()?;
                    let msg = format!("`id` takes a type, not a string: write `id = {}`", lit.value());
                    return Err(syn::Error::new_spanned(lit, msg));
                }
                let ty = value.parse::<syn::Type>().map_err(|e| {
                    syn::Error::new(e.span(), "expected a type after `id =`, as in `id = uuid::Uuid` or `id = String`")
                })?;
                set_once(cx, &mut out.id, ty, &meta.path, "machine");
            } else if meta.path.is_ident("crate") {
                let lit = lit_str(&meta, "crate = \"my_facade::statefold\"")?;
                match lit.parse::<syn::Path>() {
                    Ok(path) => set_once(cx, &mut out.krate, path, &meta.path, "machine"),
                    Err(_) => cx.error_spanned_by(
                        &lit,
                        format_args!(
                            "`{}` is not a path: `crate = \"..\"` names the statefold crate as your code reaches it, e.g. `crate = \"sf\"` for a dependency renamed `sf`",
                            lit.value()
                        ),
                    ),
                }
            } else {
                return Err(meta.error(
                    "unknown key in `#[machine(..)]`; expected `table = \"..\"`, `events_table = \"..\"`, `id = Type` or `crate = \"..\"`",
                ));
            }
            Ok(())
        });
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
    out
}

pub(crate) fn state_attrs<'a>(cx: &Ctxt, attrs: &'a [Attribute]) -> StateAttrs<'a> {
    let mut out = StateAttrs::default();
    let mut seen_from = false;
    for attr in attrs {
        if misplaced(cx, attr, Place::Variant) {
            continue;
        }
        if attr.path().is_ident("initial") {
            if attr.meta.require_path_only().is_err() {
                // Still counted as initial: the intent is plain, so no follow-on errors.
                cx.error_spanned_by(attr, "`#[initial]` takes no arguments");
                out.initial = Some(attr);
            } else if out.initial.is_some() {
                cx.error_spanned_by(attr, "duplicate `#[initial]`");
            } else {
                out.initial = Some(attr);
            }
        } else if attr.path().is_ident("from") {
            if seen_from {
                cx.error_spanned_by(attr, "duplicate `#[from(..)]`: list every source state in one");
                continue;
            }
            seen_from = true;
            out.from_unreadable = true;
            if attr.meta.require_list().is_err() {
                cx.error_spanned_by(
                    attr,
                    "expected `#[from(State, ..)]` listing the states this one may be entered from",
                );
                continue;
            }
            match attr.parse_args_with(Punctuated::<Ident, Token![,]>::parse_terminated) {
                Ok(list) if list.is_empty() => {
                    cx.error_spanned_by(attr, "`#[from(..)]` needs at least one state");
                }
                Ok(list) => {
                    out.from = list.into_iter().collect();
                    out.from_unreadable = false;
                }
                Err(err) => cx.syn_error(syn::Error::new(
                    err.span(),
                    "expected state names in `#[from(..)]`, e.g. `#[from(Placed, Paid)]`",
                )),
            }
        } else if attr.path().is_ident("state") {
            if attr.meta.require_list().is_err() {
                cx.error_spanned_by(attr, "expected `#[state(name = \"..\")]` or `#[state(was = \"..\")]`");
                continue;
            }
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    let lit = lit_str(&meta, "name = \"paid\"")?;
                    set_once(cx, &mut out.name, lit, &meta.path, "state");
                } else if meta.path.is_ident("was") {
                    out.was.push(lit_str(&meta, "was = \"paid\"")?);
                } else {
                    return Err(meta.error(
                        "unknown key in `#[state(..)]`; expected `name = \"..\"` (database name) or `was = \"..\"` (an earlier database name)",
                    ));
                }
                Ok(())
            });
            if let Err(err) = result {
                cx.syn_error(err);
            }
        }
    }
    out
}

pub(crate) fn column_attrs(cx: &Ctxt, attrs: &[Attribute]) -> ColumnAttrs {
    let mut out = ColumnAttrs::default();
    for attr in attrs {
        if misplaced(cx, attr, Place::Field) || !attr.path().is_ident("column") {
            continue;
        }
        // An unreadable `#[column]` is taken as `json`, so the field's type
        // raises no follow-on error.
        if attr.meta.require_list().is_err() {
            cx.error_spanned_by(attr, "expected `#[column(json)]` or `#[column(index)]`");
            out.json = true;
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            // A repeated key is reported and otherwise harmless: what it asks for holds.
            if meta.path.is_ident("json") {
                if out.json {
                    cx.error_spanned_by(&meta.path, "duplicate `json` in `#[column(..)]`");
                }
                out.json = true;
                Ok(())
            } else if meta.path.is_ident("index") {
                if out.index.is_some() {
                    cx.error_spanned_by(&meta.path, "duplicate `index` in `#[column(..)]`");
                } else {
                    out.index = Some(meta.path.clone());
                }
                Ok(())
            } else {
                Err(meta.error("unknown key in `#[column(..)]`; expected `json` or `index`"))
            }
        });
        if let Err(err) = result {
            cx.syn_error(err);
            out.json = true;
        }
    }
    out
}

/// The `#[doc]` attributes, and their text joined and trimmed.
pub(crate) fn docs(attrs: &[Attribute]) -> (Vec<&Attribute>, String) {
    let mut kept = Vec::new();
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value {
                lines.push(s.value().trim().to_owned());
                kept.push(attr);
            }
        }
    }
    (kept, lines.join("\n").trim().to_owned())
}
