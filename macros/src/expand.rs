//! Code generation. Every path is absolute (`::statefold::..`, or the path
//! given by `#[machine(crate = "..")]`; `::core::..`)
//! and every generated item carries docs, so user crates stay warning-free.

use crate::ast::{Field, Machine, State};
use crate::check::{self, Analysis};
use crate::ctxt::Ctxt;
use crate::diagram;
use heck::ToSnakeCase;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use std::collections::HashSet;
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident};

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let code = Machine::from_syn(&cx, input).map(|machine| {
        let analysis = check::check(&cx, &machine);
        Expander::new(&machine, &analysis).expand()
    });
    // Errors and the best-effort expansion go out together: the expansion
    // keeps only valid parts, so one mistake yields one error.
    let errors = cx.check().map(|e| e.to_compile_error());
    quote! { #errors #code }
}

struct Expander<'m, 'a> {
    machine: &'m Machine<'a>,
    analysis: &'m Analysis<'m, 'a>,
    vis: &'a syn::Visibility,
    status: Ident,
    row: Ident,
    state_enum: Ident,
    id_ty: TokenStream,
    /// The local name generated code imports the runtime crate under.
    krate: TokenStream,
    /// The import itself: `use ::statefold::__private::runtime as __statefold_order_runtime;`.
    import: TokenStream,
    /// The hidden module holding the edge traits.
    hidden: Ident,
}

fn lit(s: &str) -> syn::LitStr {
    syn::LitStr::new(s, Span::call_site())
}

impl<'m, 'a> Expander<'m, 'a> {
    fn new(machine: &'m Machine<'a>, analysis: &'m Analysis<'m, 'a>) -> Self {
        let name = machine.ident;
        let alias = format_ident!("__statefold_{}_runtime", name.to_string().to_snake_case());
        let id_ty = match &machine.id {
            Some(ty) => quote!(#ty),
            None => quote!(i64),
        };
        Self {
            machine,
            analysis,
            vis: &machine.original.vis,
            status: format_ident!("{}Status", name),
            row: format_ident!("{}Row", name),
            state_enum: format_ident!("{}State", name),
            id_ty,
            krate: quote!(#alias),
            import: {
                let path = &machine.krate;
                quote!(use #path as #alias;)
            },
            hidden: format_ident!("__statefold_{}", name.to_string().to_snake_case()),
        }
    }

    fn event_ident(&self, state: &State<'_>) -> Ident {
        format_ident!("{}{}", self.machine.ident, state.ident)
    }

    fn expand(&self) -> TokenStream {
        let status = self.status_enum();
        let events = self.machine.states.iter().map(|s| self.event_struct(s));
        let gates = self.gates();
        let row = self.row_struct();
        let state_enum = self.state_enum();
        let machine = self.machine_impl();
        let import = &self.import;
        quote! {
            #import
            #status
            #(#events)*
            #gates
            #row
            #state_enum
            #machine
        }
    }

    fn diagram_doc(&self) -> TokenStream {
        let mermaid = diagram::mermaid(self.machine, &self.analysis.edges);
        let block = lit(&format!("```mermaid\n{mermaid}```"));
        quote!(#[doc = ""] #[doc = #block])
    }

    fn status_enum(&self) -> TokenStream {
        let krate = &self.krate;
        let Self { vis, status, .. } = self;
        let name = self.machine.ident;
        let doc =
            lit(&format!("The status of {} [`{name}`] record: which state it is in.", article(&name.to_string())));
        let diagram = self.diagram_doc();
        let variants = self.machine.states.iter().map(|s| {
            let ident = s.ident;
            let doc = lit(&format!("In [`{name}::{ident}`], stored as `{}`.", s.db_name.value));
            quote!(#[doc = #doc] #ident)
        });
        let all = self.machine.states.iter().map(|s| s.ident);
        let count = self.machine.states.len();
        let index_arms = self.machine.states.iter().enumerate().map(|(i, s)| {
            let ident = s.ident;
            quote!(Self::#ident => #i)
        });
        let as_str_arms = self.machine.states.iter().map(|s| {
            let ident = s.ident;
            let db = &s.db_name.value;
            quote!(Self::#ident => #db)
        });
        let index_body = if count == 0 { quote!(match self {}) } else { quote!(match self { #(#index_arms,)* }) };
        let as_str_body = if count == 0 { quote!(match self {}) } else { quote!(match self { #(#as_str_arms,)* }) };
        quote! {
            #[doc = #doc]
            #diagram
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
            #vis enum #status {
                #(#variants,)*
            }

            #[automatically_derived]
            impl #status {
                /// Every status, in declaration order.
                pub const ALL: [Self; #count] = [#(Self::#all),*];

                /// The name stored in the `status` column.
                #[must_use]
                pub const fn as_str(self) -> &'static str {
                    #as_str_body
                }
            }

            #[automatically_derived]
            impl #krate::Status for #status {
                type Machine = #name;
                const ALL: &'static [Self] = &Self::ALL;
                fn index(self) -> usize {
                    #index_body
                }
            }

            #[automatically_derived]
            impl ::core::fmt::Display for #status {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(<Self as #krate::Status>::name(*self))
                }
            }

            #[automatically_derived]
            impl ::core::str::FromStr for #status {
                type Err = #krate::UnknownStatus;
                fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                    let by_name = Self::ALL.iter().copied().find(|status| <Self as #krate::Status>::name(*status) == s);
                    by_name.or_else(|| <Self as #krate::Status>::from_db_name(s)).ok_or_else(|| #krate::UnknownStatus {
                        machine: <#name as #krate::Machine>::DEF.name,
                        value: ::std::string::ToString::to_string(s),
                    })
                }
            }
        }
    }

    fn event_struct(&self, state: &State<'_>) -> TokenStream {
        let krate = &self.krate;
        let vis = self.vis;
        let name = self.machine.ident;
        let status = &self.status;
        let ident = state.ident;
        let event = self.event_ident(state);
        let docs = &state.docs;
        let doc = lit(&format!("The event entering [`{name}::{ident}`]."));
        let sep = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
        let serde_path = lit(&format!("{}::__private::serde", krate.to_string().replace(' ', "")));
        let serde_attrs = quote! {
            #[derive(Clone, Debug, PartialEq, #krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]
            #[serde(crate = #serde_path)]
        };
        let state_serde = &state.serde;
        let idents: Vec<_> = state.fields.iter().map(|f| f.ident).collect();
        let body = if state.unit {
            quote!(;)
        } else {
            let fields = state.fields.iter().map(|f| {
                let (ident, ty, docs) = (f.ident, f.ty, &f.docs);
                let fallback = docs.is_empty().then(|| {
                    let doc = lit(&format!("The `{}` of [`{name}::{}`].", f.name, state.ident));
                    quote!(#[doc = #doc])
                });
                let serde = &f.serde;
                quote!(#(#docs)* #fallback #(#serde)* #vis #ident: #ty)
            });
            quote!({ #(#fields,)* })
        };
        let into =
            if state.unit { quote!(#name::#ident) } else { quote!(#name::#ident { #(#idents: event.#idents),* }) };
        let access: Vec<_> = idents.iter().map(|i| quote!(self.#i)).collect();
        let encode = self.encode_body(state, &access);
        let initial = state.initial.then(|| {
            quote! {
                #[automatically_derived]
                impl #krate::Initial for #event {}
            }
        });
        quote! {
            #(#docs)*
            #sep
            #[doc = #doc]
            #serde_attrs
            #(#state_serde)*
            #vis struct #event #body

            #[automatically_derived]
            impl ::core::convert::From<#event> for #name {
                fn from(event: #event) -> Self {
                    #into
                }
            }

            #[automatically_derived]
            impl #krate::Event for #event {
                type Machine = #name;
                const STATUS: #status = #status::#ident;
                fn encode(&self) -> ::core::result::Result<#krate::Encoded, #krate::__private::serde_json::Error> {
                    #encode
                }
            }

            #initial
        }
    }

    /// The payload map and column list of one state's event; `access` reads each field.
    fn encode_body(&self, state: &State<'_>, access: &[TokenStream]) -> TokenStream {
        let krate = &self.krate;
        let json = quote!(#krate::__private::serde_json);
        let count = state.fields.len();
        let steps = state.fields.iter().zip(access).map(|(field, access)| {
            // The payload names the field as its event struct's serde does; the row by its column.
            let key = &field.name;
            let json_key = &field.json.value;
            // The column's first declaration decides JSON or not; a mismatch is already reported.
            let column = self.analysis.columns.iter().find(|c| c.field.name == field.name);
            let payload =
                quote!(__payload.insert(::std::string::ToString::to_string(#json_key), #json::to_value(&#access)?););
            let Some(column) = column else {
                return payload;
            };
            if column.field.json_column {
                quote! {
                    #payload
                    __columns.push((#key, #krate::json_to_value(&#access)?));
                }
            } else {
                let to_value = column_call(krate, field, quote!(to_value));
                quote! {
                    #payload
                    __columns.push((#key, #to_value(&#access)));
                }
            }
        });
        let mutability = (count > 0).then(|| quote!(mut));
        quote! {
            let #mutability __payload = #json::Map::new();
            #[allow(unused_mut)]
            let mut __columns = ::std::vec::Vec::with_capacity(#count);
            #(#steps)*
            ::core::result::Result::Ok(#krate::Encoded {
                payload: #json::Value::Object(__payload),
                columns: __columns,
            })
        }
    }

    /// `Enters<S>` for every pair of states: plain along declared edges, and
    /// elsewhere bounded by a trait that is never implemented, one per pair,
    /// whose `on_unimplemented` names both states and the valid sources. A
    /// wrong transition then reads in states, not in event structs. The
    /// traits live in a hidden module, out of reach of glob imports.
    fn gates(&self) -> TokenStream {
        let krate = &self.krate;
        let name = self.machine.ident;
        let hidden = &self.hidden;
        let states = &self.machine.states;
        let mut taken = HashSet::new();
        let mut traits = Vec::new();
        let mut impls = Vec::new();
        let inner = inner_vis(self.vis);
        for (to, target) in states.iter().enumerate() {
            let event = self.event_ident(target);
            let ident = target.ident;
            let sources: Vec<String> = self
                .analysis
                .edges
                .iter()
                .filter(|(_, t)| *t == to)
                .map(|&(from, _)| states[from].ident.to_string())
                .collect();
            let note = lit(&if sources.is_empty() {
                format!("`{ident}` has no `#[from(..)]`: records only start in it")
            } else {
                format!("valid sources of `{ident}` are: {}", sources.join(", "))
            });
            for (from, source) in states.iter().enumerate() {
                let source_event = self.event_ident(source);
                if self.analysis.edges.contains(&(from, to)) {
                    impls.push(quote! {
                        #[automatically_derived]
                        #[diagnostic::do_not_recommend]
                        impl #krate::Enters<#source_event> for #event {}
                    });
                    continue;
                }
                let mut gate = format_ident!("{}To{}", source.ident, ident);
                if !taken.insert(gate.to_string()) {
                    gate = format_ident!("{}To{}{}x{}", source.ident, ident, from, to);
                    taken.insert(gate.to_string());
                }
                let message = lit(&format!("`{name}` cannot go from `{}` to `{ident}`", source.ident));
                let label = lit(&format!("`{ident}` cannot be entered from `{}`", source.ident));
                traits.push(quote! {
                    #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
                    #inner trait #gate<'a> {}
                });
                impls.push(quote! {
                    #krate::__not_an_edge!(#source_event => #event, #hidden::#gate);
                });
            }
        }
        let vis = self.vis;
        let doc = lit(&format!("The transitions `{name}` does not declare, each a trait never implemented."));
        quote! {
            #[doc = #doc]
            #[doc(hidden)]
            #[allow(non_camel_case_types)]
            #vis mod #hidden {
                #(#traits)*
            }
            #(#impls)*
        }
    }

    /// The row field's type: the column's, in `Option` unless every insert sets it.
    fn row_field_type(column: &check::Column<'_, '_>) -> TokenStream {
        let ty = column.field.ty;
        if Self::wrapped(column) {
            quote!(::core::option::Option<#ty>)
        } else {
            quote!(#ty)
        }
    }

    /// Whether the row holds the column in an `Option` its declaration does not have.
    fn wrapped(column: &check::Column<'_, '_>) -> bool {
        !column.set_on_insert && !is_option(column.field.ty)
    }

    fn row_struct(&self) -> TokenStream {
        let krate = &self.krate;
        let Self { vis, status, row, id_ty, .. } = self;
        let name = self.machine.ident;
        let chrono = quote!(#krate::__private::chrono);
        let doc = lit(&format!("A stored row of [`{name}`]: bookkeeping columns, then one field per payload column."));
        let fields = self.analysis.columns.iter().map(|c| {
            let ident = c.field.ident;
            let ty = Self::row_field_type(c);
            let setters: Vec<String> =
                c.states.iter().map(|&s| format!("`{}`", self.machine.states[s].ident)).collect();
            let doc = lit(&format!("Set by {}.", setters.join(", ")));
            let docs = &c.field.docs;
            let sep = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
            quote!(#(#docs)* #sep #[doc = #doc] pub #ident: #ty)
        });
        // A column wrapped in `Option` here is read and written through its
        // declared type's `Column`, spanned like the description's uses, so an
        // unsupported type is one error, not a second one at the derive.
        let values = self.analysis.columns.iter().map(|c| {
            let ident = c.field.ident;
            let to_value = column_call(krate, c.field, quote!(to_value));
            if c.field.json_column {
                quote!(#krate::json_to_value(&self.#ident)?)
            } else if Self::wrapped(c) {
                quote! {
                    match &self.#ident {
                        ::core::option::Option::Some(__value) => #to_value(__value),
                        ::core::option::Option::None => #krate::Value::Null,
                    }
                }
            } else {
                quote!(#to_value(&self.#ident))
            }
        });
        let reads = self.analysis.columns.iter().map(|c| {
            let ident = c.field.ident;
            let key = &c.field.name;
            let ty = Self::row_field_type(c);
            let from_value = column_call(krate, c.field, quote!(from_value));
            let read = if c.field.json_column {
                quote!(#krate::json_from_value::<#ty>(__value))
            } else if Self::wrapped(c) {
                quote! {
                    match __value {
                        #krate::Value::Null => ::core::result::Result::Ok(::core::option::Option::None),
                        __value => #from_value(__value).map(::core::option::Option::Some),
                    }
                }
            } else {
                quote!(#from_value(__value))
            };
            quote! {
                #ident: {
                    let __value = __columns.next().unwrap_or(#krate::Value::Null);
                    #read.map_err(|source| #krate::ColumnError { column: #key, source })?
                }
            }
        });
        let cols_mut = if self.analysis.columns.is_empty() {
            quote!(let _ = columns;)
        } else {
            quote!(let mut __columns = columns.into_iter();)
        };
        quote! {
            #[doc = #doc]
            #[derive(Clone, Debug, PartialEq)]
            #vis struct #row {
                /// The record's key.
                pub id: #id_ty,
                /// The record's current status.
                pub status: #status,
                /// The number of events applied to the record (1 after insert).
                pub version: i64,
                /// When the record was inserted.
                pub created_at: #chrono::DateTime<#chrono::Utc>,
                /// When the record last changed.
                pub updated_at: #chrono::DateTime<#chrono::Utc>,
                #(#fields,)*
            }

            #[automatically_derived]
            impl #krate::Row for #row {
                type Machine = #name;
                fn id(&self) -> &#id_ty {
                    &self.id
                }
                fn status(&self) -> #status {
                    self.status
                }
                fn version(&self) -> i64 {
                    self.version
                }
                fn created_at(&self) -> #chrono::DateTime<#chrono::Utc> {
                    self.created_at
                }
                fn updated_at(&self) -> #chrono::DateTime<#chrono::Utc> {
                    self.updated_at
                }
                fn columns(&self) -> ::core::result::Result<::std::vec::Vec<#krate::Value>, #krate::__private::serde_json::Error> {
                    ::core::result::Result::Ok(::std::vec![#(#values),*])
                }
                fn from_parts(
                    header: #krate::RowHeader<#name>,
                    columns: ::std::vec::Vec<#krate::Value>,
                ) -> ::core::result::Result<Self, #krate::ColumnError> {
                    #cols_mut
                    ::core::result::Result::Ok(Self {
                        id: header.id,
                        status: header.status,
                        version: header.version,
                        created_at: header.created_at,
                        updated_at: header.updated_at,
                        #(#reads,)*
                    })
                }
            }
        }
    }

    fn state_enum(&self) -> TokenStream {
        let krate = &self.krate;
        let Self { vis, row, state_enum, status, .. } = self;
        let name = self.machine.ident;
        let doc = lit(&format!(
            "A loaded [`{name}`] record as the typed handle of its current state: match on it to transition."
        ));
        let diagram = self.diagram_doc();
        let variants = self.machine.states.iter().map(|s| {
            let ident = s.ident;
            let event = self.event_ident(s);
            let doc = lit(&format!("A record in [`{name}::{ident}`]."));
            quote!(#[doc = #doc] #ident(#krate::Record<#name, #event>))
        });
        let row_arms = self.machine.states.iter().map(|s| {
            let ident = s.ident;
            quote!(Self::#ident(record) => record.row())
        });
        let into_row_arms = self.machine.states.iter().map(|s| {
            let ident = s.ident;
            quote!(Self::#ident(record) => record.into_row())
        });
        let (row_body, into_row_body) = if self.machine.states.is_empty() {
            (quote!(match *self {}), quote!(match self {}))
        } else {
            (quote!(match self { #(#row_arms,)* }), quote!(match self { #(#into_row_arms,)* }))
        };
        quote! {
            #[doc = #doc]
            #diagram
            #[derive(Clone, Debug, PartialEq)]
            #vis enum #state_enum {
                #(#variants,)*
            }

            #[automatically_derived]
            impl #state_enum {
                /// The loaded row.
                #[must_use]
                pub fn row(&self) -> &#row {
                    #row_body
                }

                /// The loaded row, by value.
                #[must_use]
                pub fn into_row(self) -> #row {
                    #into_row_body
                }

                /// The record's current status.
                #[must_use]
                pub fn status(&self) -> #status {
                    self.row().status
                }
            }
        }
    }

    fn machine_impl(&self) -> TokenStream {
        let krate = &self.krate;
        let Self { status, row, state_enum, id_ty, .. } = self;
        let name = self.machine.ident;
        let json = quote!(#krate::__private::serde_json);
        let states = &self.machine.states;
        let empty = states.is_empty();
        let status_arms = states.iter().map(|s| {
            let ident = s.ident;
            quote!(Self::#ident { .. } => #status::#ident)
        });
        let encode_arms = states.iter().map(|s| {
            let ident = s.ident;
            let idents: Vec<_> = s.fields.iter().map(|f| f.ident).collect();
            let access: Vec<_> = idents.iter().map(|i| quote!(*#i)).collect();
            let body = self.encode_body(s, &access);
            quote!(Self::#ident { #(#idents,)* .. } => { #body })
        });
        let decode_arms = states.iter().map(|s| {
            let ident = s.ident;
            if s.unit {
                quote!(#status::#ident => ::core::result::Result::Ok(Self::#ident))
            } else {
                let event = self.event_ident(s);
                quote!(#status::#ident => #json::from_str::<#event>(payload).map(::core::convert::Into::into))
            }
        });
        let upcast_arms = states.iter().flat_map(|s| {
            let ident = s.ident;
            s.upcasts.iter().map(move |(from, function)| {
                // The function's own tokens, so that a wrong one is reported on them.
                let function = quote_spanned!(function.span()=> #function);
                quote! {
                    (#status::#ident, #from) => #krate::__upcast(#function, payload)
                }
            })
        });
        let upcast_body = if empty {
            quote!({
                let _ = (from, payload);
                match status {}
            })
        } else {
            quote! {
                #[allow(unreachable_patterns)]
                match (status, from) {
                    #(#upcast_arms,)*
                    _ => ::core::result::Result::Ok(payload),
                }
            }
        };
        let state_arms = states.iter().map(|s| {
            let ident = s.ident;
            quote!(#status::#ident => #state_enum::#ident(#krate::Record::__from_row(row)))
        });
        // Variants that are not states were reported; this arm only keeps the
        // expansion compiling so that error stands alone.
        let rest = self.machine.incomplete.then(|| quote!(_ => ::core::unreachable!(),));
        let status_body = if empty { quote!(match *self {}) } else { quote!(match self { #(#status_arms,)* #rest }) };
        let encode_body = if empty { quote!(match *self {}) } else { quote!(match self { #(#encode_arms)* #rest }) };
        let decode_body = if empty {
            quote!({
                let _ = payload;
                match status {}
            })
        } else {
            quote!(match status { #(#decode_arms,)* })
        };
        let state_body =
            if empty { quote!(match row.status {}) } else { quote!(match row.status { #(#state_arms,)* }) };
        let def = self.def();
        let generated_id = self.machine.id.is_none().then(|| {
            quote! {
                #[automatically_derived]
                impl #krate::GeneratedId for #name {}
            }
        });
        quote! {
            #generated_id

            #[automatically_derived]
            impl #krate::Machine for #name {
                type Status = #status;
                type Id = #id_ty;
                type Row = #row;
                type State = #state_enum;

                const DEF: &'static #krate::MachineDef = &#def;

                fn status(&self) -> #status {
                    #status_body
                }

                fn encode(&self) -> ::core::result::Result<#krate::Encoded, #json::Error> {
                    #encode_body
                }

                fn decode(status: #status, payload: &str) -> ::core::result::Result<Self, #json::Error> {
                    #decode_body
                }

                fn upcast(
                    status: #status,
                    from: u32,
                    payload: #json::Value,
                ) -> ::core::result::Result<#json::Value, ::std::string::String> {
                    #upcast_body
                }

                fn into_state(row: #row) -> #state_enum {
                    #state_body
                }
            }
        }
    }

    fn def(&self) -> TokenStream {
        let krate = &self.krate;
        let machine = self.machine;
        let name = machine.ident.to_string();
        let doc = &machine.doc;
        let table = &machine.table.value;
        let events_table = &machine.events_table.value;
        let generated = machine.id.is_none();
        // The key type's own tokens: an unsupported key is reported on them.
        let id_ty = &self.id_ty;
        let id_type = quote!(#krate::IdDef::__new(<#id_ty as #krate::Column>::TYPE, #generated));
        let states = machine.states.iter().map(|s| {
            let ident = s.ident.to_string();
            let db = &s.db_name.value;
            let was = s.was.iter().map(|w| &w.value);
            let initial = s.initial;
            let doc = &s.doc;
            let version = s.version;
            let stored: Vec<(&Field<'_>, &Field<'_>)> = s
                .fields
                .iter()
                .filter_map(|f| self.analysis.columns.iter().find(|c| c.field.name == f.name).map(|c| (f, c.field)))
                .collect();
            let fields = stored.iter().map(|(f, _)| &f.name);
            let payload = stored.iter().map(|&(f, column)| {
                let (name, json) = (&f.name, &f.json.value);
                let aliases = f.aliases.iter().map(|a| &a.value);
                let optional = is_option(f.ty);
                let ty = short_type(option_inner(f.ty).unwrap_or(f.ty));
                // The column's first declaration decides its storage type, as in
                // the column list: a mismatch here is already reported.
                let logical = if column.json_column {
                    quote!(#krate::LogicalType::Json)
                } else {
                    column_call(krate, column, quote!(TYPE))
                };
                let default = f.default;
                quote! {
                    #krate::FieldDef::__new(#name, #json, &[#(#aliases),*], #ty, #logical, #optional, #default)
                }
            });
            quote! {
                #krate::StateDef::__new(#ident, #db, &[#(#was),*], #initial, #doc, &[#(#fields),*], &[#(#payload),*], #version)
            }
        });
        let edges = self.analysis.edges.iter().map(|&(from, to)| {
            let from = machine.states[from].ident.to_string();
            let to = machine.states[to].ident.to_string();
            quote!(#krate::Edge { from: #from, to: #to })
        });
        let columns = self.analysis.columns.iter().map(|c| {
            let key = &c.field.name;
            let ty = c.field.ty;
            let (logical, nullable) = if c.field.json_column {
                let nullable = is_option(ty);
                (quote!(#krate::LogicalType::Json), quote!(#nullable))
            } else {
                (column_call(krate, c.field, quote!(TYPE)), column_call(krate, c.field, quote!(NULLABLE)))
            };
            let nullable = if c.set_on_insert { nullable } else { quote!(true) };
            let indexed = c.indexed;
            quote! {
                #krate::ColumnDef::__new(#key, #logical, #nullable, #indexed)
            }
        });
        let mermaid = diagram::mermaid(machine, &self.analysis.edges);
        let dot = diagram::dot(machine, &self.analysis.edges);
        quote! {
            #krate::MachineDef::__new(
                #name,
                #doc,
                #table,
                #events_table,
                #id_type,
                &[#(#states),*],
                &[#(#edges),*],
                &[#(#columns),*],
                #mermaid,
                #dot,
            )
        }
    }
}

/// `<Ty as ::statefold::Column>::item`, spanned on the field's type so an
/// unsupported type is reported there (once: rustc merges identical errors).
fn column_call(krate: &TokenStream, field: &Field<'_>, item: TokenStream) -> TokenStream {
    let ty = field.ty;
    quote_spanned!(ty.span()=> <#ty as #krate::Column>::#item)
}

/// Whether a type is written as `Option<..>` (any path ending in `Option`).
fn is_option(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(path) => path.qself.is_none() && path.path.segments.last().is_some_and(|s| s.ident == "Option"),
        syn::Type::Group(group) => is_option(&group.elem),
        syn::Type::Paren(paren) => is_option(&paren.elem),
        _ => false,
    }
}

/// The `T` of a type written as `Option<T>`.
fn option_inner(ty: &syn::Type) -> Option<&syn::Type> {
    match ty {
        syn::Type::Group(group) => option_inner(&group.elem),
        syn::Type::Paren(paren) => option_inner(&paren.elem),
        syn::Type::Path(path) if is_option(ty) => {
            let last = path.path.segments.last()?;
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
            args.args.iter().find_map(|arg| match arg {
                syn::GenericArgument::Type(inner) => Some(inner),
                _ => None,
            })
        }
        _ => None,
    }
}

/// A type as written, without whitespace and without paths
/// (`chrono::DateTime<chrono::Utc>` is `DateTime<Utc>`), so that naming a
/// type another way is not taken for another type.
fn short_type(ty: &syn::Type) -> String {
    let written = check::type_key(ty);
    let mut out = String::with_capacity(written.len());
    let mut rest = written.as_str();
    while let Some(at) = rest.find("::") {
        out.push_str(&rest[..at]);
        while out.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            out.pop();
        }
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

/// The visibility inside a module declared beside the enum that reaches as
/// far as the enum's own visibility.
fn inner_vis(vis: &syn::Visibility) -> TokenStream {
    match vis {
        syn::Visibility::Public(_) => quote!(pub),
        syn::Visibility::Inherited => quote!(pub(super)),
        syn::Visibility::Restricted(restricted) => {
            let path = &restricted.path;
            let first = path.segments.first().map(|s| s.ident.to_string()).unwrap_or_default();
            match first.as_str() {
                "crate" if path.leading_colon.is_none() => quote!(#vis),
                "self" if path.segments.len() == 1 => quote!(pub(super)),
                "self" => {
                    let rest = path.segments.iter().skip(1);
                    quote!(pub(in super #(::#rest)*))
                }
                "super" => quote!(pub(in super::#path)),
                _ => quote!(#vis),
            }
        }
    }
}

/// "a" or "an" before a name, by its first letter.
fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U' | 'a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}
