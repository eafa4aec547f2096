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
        "initial" | "from" | "state" | "event" => Place::Variant,
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

/// What `#[serde(..)]` on a field asks of the event struct's payload.
#[derive(Default)]
pub(crate) struct SerdeField<'a> {
    /// The attributes to pass on, each fully accepted.
    pub(crate) attrs: Vec<&'a Attribute>,
    /// `rename = ".."`: the field's name in the payload.
    pub(crate) rename: Option<LitStr>,
    /// `alias = ".."`: further names it is read under.
    pub(crate) aliases: Vec<LitStr>,
    /// `default` or `default = ".."`: a payload without it still decodes.
    pub(crate) default: bool,
}

/// `#[serde(..)]` on a variant: how its event struct names fields.
#[derive(Default)]
pub(crate) struct SerdeState<'a> {
    /// The attributes to pass on, each fully accepted.
    pub(crate) attrs: Vec<&'a Attribute>,
    /// `rename_all = ".."`.
    pub(crate) rename_all: Option<RenameRule>,
}

/// serde's `rename_all` rules, as they apply to a field name.
#[derive(Clone, Copy)]
pub(crate) enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl RenameRule {
    const ALL: [(&'static str, Self); 8] = [
        ("lowercase", Self::Lower),
        ("UPPERCASE", Self::Upper),
        ("PascalCase", Self::Pascal),
        ("camelCase", Self::Camel),
        ("snake_case", Self::Snake),
        ("SCREAMING_SNAKE_CASE", Self::ScreamingSnake),
        ("kebab-case", Self::Kebab),
        ("SCREAMING-KEBAB-CASE", Self::ScreamingKebab),
    ];

    /// The payload name serde gives the field `name` under this rule.
    pub(crate) fn apply(self, name: &str) -> String {
        match self {
            Self::Lower | Self::Snake => name.to_owned(),
            Self::Upper | Self::ScreamingSnake => name.to_ascii_uppercase(),
            Self::Pascal => {
                let mut out = String::new();
                let mut capitalize = true;
                for ch in name.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        out.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        out.push(ch);
                    }
                }
                out
            }
            Self::Camel => {
                let pascal = Self::Pascal.apply(name);
                let mut chars = pascal.chars();
                chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
            }
            Self::Kebab => name.replace('_', "-"),
            Self::ScreamingKebab => name.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

/// Skips the value of a key that is refused, so the rest of the list is still read.
fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<proc_macro2::TokenStream>()?;
    }
    Ok(())
}

fn meta_key(path: &syn::Path) -> String {
    quote::ToTokens::to_token_stream(path).to_string().replace(' ', "")
}

/// `#[serde(..)]` on a field of a state. Only what keeps one value per field
/// in the payload, read back under the name it was written with, is accepted.
pub(crate) fn serde_field<'a>(cx: &Ctxt, field: &syn::Ident, attrs: &'a [Attribute]) -> SerdeField<'a> {
    let mut out = SerdeField::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let mut accepted = true;
        let result = attr.parse_nested_meta(|meta| {
            let key = meta_key(&meta.path);
            let refuse = |msg: String| {
                cx.error_spanned_by(&meta.path, msg);
                skip_value(&meta)
            };
            match key.as_str() {
                "default" => {
                    if meta.input.peek(Token![=]) {
                        lit_str(&meta, "default = \"path::to::function\"")?;
                    }
                    out.default = true;
                    Ok(())
                }
                "rename" if meta.input.peek(Token![=]) => {
                    let lit = lit_str(&meta, "rename = \"amountCents\"")?;
                    set_once(cx, &mut out.rename, lit, &meta.path, "serde");
                    Ok(())
                }
                "rename" => {
                    accepted = false;
                    refuse(
                        "`rename` takes one name here, as in `#[serde(rename = \"..\")]`: an event is read back under the name it was written with".to_owned(),
                    )
                }
                "alias" => {
                    out.aliases.push(lit_str(&meta, "alias = \"earlier_name\"")?);
                    Ok(())
                }
                "flatten" => {
                    accepted = false;
                    refuse(format!(
                        "`#[serde(flatten)]` cannot apply to `{field}`: the field is one column of the row, so it is one value of the payload; store a struct in one column with `#[column(json)]`"
                    ))
                }
                "skip" | "skip_serializing" | "skip_deserializing" => {
                    accepted = false;
                    refuse(format!(
                        "`#[serde({key})]` would leave `{field}` out of its stored events, so the log would lose it and a record rebuilt from its events would differ from its row: every field of a state is stored"
                    ))
                }
                "skip_serializing_if" => {
                    accepted = false;
                    refuse(format!(
                        "`#[serde(skip_serializing_if = ..)]` is not supported on `{field}`: the payload holds every field (`None` is stored as `null` and read back as `None`)"
                    ))
                }
                "with" | "serialize_with" | "deserialize_with" => {
                    accepted = false;
                    refuse(format!(
                        "`#[serde({key} = ..)]` is not supported on `{field}`: its column and its payload both take the value through its type; give the value a type with its own `Serialize` and `Deserialize`, stored with `#[column(json)]`"
                    ))
                }
                _ => {
                    accepted = false;
                    refuse(format!(
                        "`#[serde({key})]` is not supported on a field of a state; supported: `default`, `default = \"path\"`, `rename = \"..\"`, `alias = \"..\"`"
                    ))
                }
            }
        });
        if let Err(err) = result {
            cx.syn_error(err);
            accepted = false;
        }
        if accepted {
            out.attrs.push(attr);
        }
    }
    out
}

/// `#[serde(..)]` on a variant: `rename_all` only, which names every field
/// of its event in the payload.
pub(crate) fn serde_state<'a>(cx: &Ctxt, attrs: &'a [Attribute]) -> SerdeState<'a> {
    let mut out = SerdeState::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let mut accepted = true;
        let result = attr.parse_nested_meta(|meta| {
            let key = meta_key(&meta.path);
            if key == "rename_all" && meta.input.peek(Token![=]) {
                let lit = lit_str(&meta, "rename_all = \"camelCase\"")?;
                match RenameRule::ALL.iter().find(|(name, _)| *name == lit.value()) {
                    Some(&(_, rule)) if out.rename_all.is_none() => out.rename_all = Some(rule),
                    Some(_) => {
                        accepted = false;
                        cx.error_spanned_by(&meta.path, "duplicate `rename_all` in `#[serde(..)]`");
                    }
                    None => {
                        accepted = false;
                        let rules = RenameRule::ALL.iter().map(|(n, _)| format!("\"{n}\"")).collect::<Vec<_>>();
                        cx.error_spanned_by(
                            &lit,
                            format_args!("unknown `rename_all` rule `{}`; expected one of {}", lit.value(), rules.join(", ")),
                        );
                    }
                }
                return Ok(());
            }
            accepted = false;
            let msg = match key.as_str() {
                "rename_all" => "`rename_all` takes one rule here, as in `#[serde(rename_all = \"camelCase\")]`: an event is read back under the names it was written with".to_owned(),
                "deny_unknown_fields" => "`#[serde(deny_unknown_fields)]` would make every event stored with a field since removed undecodable: a state's events are read for as long as they are kept".to_owned(),
                "default" => "`#[serde(default)]` on a state is not supported: put `#[serde(default)]` on each field that stored events may lack".to_owned(),
                _ => format!(
                    "`#[serde({key})]` is not supported on a state; supported: `rename_all = \"..\"` here, and `default`, `rename = \"..\"`, `alias = \"..\"` on its fields"
                ),
            };
            cx.error_spanned_by(&meta.path, msg);
            skip_value(&meta)
        });
        if let Err(err) = result {
            cx.syn_error(err);
            accepted = false;
        }
        if accepted {
            out.attrs.push(attr);
        }
    }
    out
}

/// `#[event(version = N, upcast(1 => f, ..))]` on a variant.
#[derive(Default)]
pub(crate) struct EventAttrs {
    /// `version = N`, with its literal for spans.
    pub(crate) version: Option<syn::LitInt>,
    /// `upcast(from => function, ..)`: each step from one version to the next.
    pub(crate) upcasts: Vec<(syn::LitInt, syn::Path)>,
    /// The `upcast` key, for errors about the whole list.
    pub(crate) upcast_key: Option<syn::Path>,
}

/// One `from => function` step of `upcast(..)`.
struct Step {
    from: syn::LitInt,
    function: syn::Path,
}

impl syn::parse::Parse for Step {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let from = input.parse()?;
        input.parse::<Token![=>]>()?;
        let function = input.parse()?;
        Ok(Self { from, function })
    }
}

pub(crate) fn event_attrs(cx: &Ctxt, attrs: &[Attribute]) -> EventAttrs {
    let mut out = EventAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
        if attr.meta.require_list().is_err() {
            cx.error_spanned_by(attr, "expected `#[event(version = 2, upcast(1 => v1_to_v2))]`");
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("version") {
                let lit: syn::LitInt = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(e.span(), "expected a whole number after `version =`, as in `version = 2`")
                })?;
                set_once(cx, &mut out.version, lit, &meta.path, "event");
            } else if meta.path.is_ident("upcast") {
                if out.upcast_key.is_some() {
                    cx.error_spanned_by(&meta.path, "duplicate `upcast` in `#[event(..)]`: list every step in one");
                }
                let content;
                syn::parenthesized!(content in meta.input);
                let steps = Punctuated::<Step, Token![,]>::parse_terminated(&content).map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected steps `from => function`, as in `upcast(1 => v1_to_v2, 2 => v2_to_v3)`",
                    )
                })?;
                out.upcasts.extend(steps.into_iter().map(|s| (s.from, s.function)));
                out.upcast_key = Some(meta.path.clone());
            } else {
                return Err(meta
                    .error("unknown key in `#[event(..)]`; expected `version = N` or `upcast(from => function, ..)`"));
            }
            Ok(())
        });
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
    out
}
