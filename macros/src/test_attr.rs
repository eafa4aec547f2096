//! `#[statefold::test]`: an `async fn` taking stores becomes one `#[test]`
//! per backend, each in a fresh database (`statefold::testing`).
//!
//! Parse the options and the signature (every mistake collected in one
//! `Ctxt`), then expand: the function, made generic over the backend, and a
//! module of the same name holding `sqlite`, `postgres` and `mysql` tests
//! that call it.

use crate::ctxt::Ctxt;
use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, GenericParam, Ident, ItemFn, LitStr, PathArguments, ReturnType, Token, Type,
};

/// A backend a test can run on: its option name, type and server variable.
#[derive(Clone, Copy, PartialEq)]
struct BackendKind {
    name: &'static str,
    ty: &'static str,
    url_var: Option<&'static str>,
    server: &'static str,
}

const BACKENDS: [BackendKind; 3] = [
    BackendKind { name: "sqlite", ty: "Sqlite", url_var: None, server: "" },
    BackendKind {
        name: "postgres",
        ty: "Postgres",
        url_var: Some("STATEFOLD_TEST_POSTGRES_URL"),
        server: "PostgreSQL",
    },
    BackendKind { name: "mysql", ty: "MySql", url_var: Some("STATEFOLD_TEST_MYSQL_URL"), server: "MySQL" },
];

/// The variable that makes a missing server URL a failure (as `CI` does).
const REQUIRE_ALL: &str = "STATEFOLD_TEST_REQUIRE_ALL";

/// The options of `#[statefold::test(..)]`.
struct Options {
    /// The backends listed in `backends(..)`, each with its token; `None`: every enabled one.
    backends: Option<Vec<(BackendKind, Ident)>>,
    /// `migrations = ".."`, relative to the crate's manifest.
    migrations: Option<LitStr>,
    /// `crate = ".."`: the path to statefold.
    krate: syn::Path,
}

/// What a parameter of the test receives.
enum Param {
    /// `Store<M>` or `Store<M, B>`.
    Store,
    /// `TestDatabase` or `TestDatabase<B>`.
    Database,
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let options = parse_options(&cx, args);
    let item = match syn::parse2::<syn::Item>(item) {
        Ok(syn::Item::Fn(item)) => Some(item),
        Ok(other) => {
            cx.error_spanned_by(
                first_tokens(&other),
                "`#[statefold::test]` goes on an `async fn` whose parameters are stores",
            );
            None
        }
        Err(e) => {
            cx.syn_error(e);
            None
        }
    };
    let prepared = item.map(|item| prepare(&cx, item, &options.krate));
    match (cx.check(), prepared) {
        (None, Some(Some(prepared))) => emit(&options, prepared),
        // The function is still emitted, without its tests, when it
        // compiles: its imports are used, and the errors come alone.
        (Some(errors), Some(Some(Prepared { item, broken: false, .. }))) => {
            let errors = errors.to_compile_error();
            quote!(#errors #[allow(dead_code)] #item)
        }
        (Some(errors), _) => errors.to_compile_error(),
        (None, _) => TokenStream::new(),
    }
}

/// The tokens an error about a whole item points at: its first line's worth.
fn first_tokens(item: &syn::Item) -> TokenStream {
    item.to_token_stream().into_iter().take(3).collect()
}

fn parse_options(cx: &Ctxt, args: TokenStream) -> Options {
    let mut backends: Option<Vec<(BackendKind, Ident)>> = None;
    let mut migrations: Option<LitStr> = None;
    let mut krate: Option<syn::Path> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("backends") {
            if backends.is_some() {
                return Err(meta.error("`backends(..)` is given twice"));
            }
            let content;
            syn::parenthesized!(content in meta.input);
            let names = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
            if names.is_empty() {
                return Err(meta.error("`backends(..)` lists at least one of `sqlite`, `postgres`, `mysql`"));
            }
            let mut listed: Vec<(BackendKind, Ident)> = Vec::new();
            for name in names {
                match BACKENDS.iter().find(|b| name == b.name) {
                    Some(_) if listed.iter().any(|(_, seen)| *seen == name) => {
                        cx.error_spanned_by(&name, format!("`{name}` is listed twice"));
                    }
                    Some(backend) => listed.push((*backend, name)),
                    None => cx.error_spanned_by(
                        &name,
                        format!("unknown backend `{name}`: the backends are `sqlite`, `postgres` and `mysql`"),
                    ),
                }
            }
            backends = Some(listed);
            Ok(())
        } else if meta.path.is_ident("migrations") {
            if migrations.is_some() {
                return Err(meta.error("`migrations = \"..\"` is given twice"));
            }
            let dir: LitStr = meta.value()?.parse()?;
            check_migrations(cx, &dir);
            migrations = Some(dir);
            Ok(())
        } else if meta.path.is_ident("crate") {
            if krate.is_some() {
                return Err(meta.error("`crate = \"..\"` is given twice"));
            }
            let path: LitStr = meta.value()?.parse()?;
            krate = Some(path.parse()?);
            Ok(())
        } else {
            let name = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!(
                "unknown option `{name}`: the options are `backends(..)`, `migrations = \"..\"` and `crate = \"..\"`"
            )))
        }
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(e);
    }
    let krate = krate.unwrap_or_else(|| syn::parse_str("::statefold").expect("a path"));
    Options { backends, migrations, krate }
}

/// Reports a migrations directory that is not there when the test is built.
fn check_migrations(cx: &Ctxt, dir: &LitStr) {
    let Ok(manifest) = std::env::var("CARGO_MANIFEST_DIR") else { return };
    if !std::path::Path::new(&manifest).join(dir.value()).is_dir() {
        cx.error_spanned_by(
            dir,
            format!(
                "no directory `{}` in this crate: `migrations = \"..\"` names the directory (beside Cargo.toml) \
                 that the schema tool's `migrations generate --dir` wrote",
                dir.value()
            ),
        );
    }
}

/// The function, ready to be emitted, and what its tests pass it.
struct Prepared {
    item: ItemFn,
    params: Vec<Param>,
    test_attrs: Vec<Attribute>,
    /// A parameter's type does not compile as it is (reported).
    broken: bool,
}

fn prepare(cx: &Ctxt, mut item: ItemFn, krate: &syn::Path) -> Option<Prepared> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(sig.fn_token, "`#[statefold::test]` runs an `async fn`: add `async` before `fn`");
    }
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(constness, "a test cannot be a `const fn`");
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error_spanned_by(unsafety, "a test cannot be an `unsafe fn`");
    }

    // At most one type parameter: the backend.
    let mut backend: Option<Ident> = None;
    for param in &sig.generics.params {
        match param {
            GenericParam::Type(ty) if backend.is_none() => backend = Some(ty.ident.clone()),
            GenericParam::Type(ty) => cx.error_spanned_by(ty, "a test takes at most one type parameter: its backend"),
            GenericParam::Lifetime(lifetime) => {
                cx.error_spanned_by(lifetime, "a test takes no lifetime parameters: its stores are owned")
            }
            GenericParam::Const(constant) => cx.error_spanned_by(constant, "a test takes no const parameters"),
        }
    }
    let declared = backend.is_some();
    let backend = backend.unwrap_or_else(|| Ident::new("__B", Span::call_site()));

    let generics: Vec<Ident> = item
        .sig
        .generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(ty) if ty.ident != backend => Some(ty.ident.clone()),
            _ => None,
        })
        .collect();
    let mut params = Vec::new();
    let mut broken = false;
    for input in &mut item.sig.inputs {
        match input {
            FnArg::Receiver(receiver) => cx.error_spanned_by(receiver, "a test takes no `self`"),
            FnArg::Typed(typed) => {
                if let Some(param) = parameter(cx, &mut typed.ty, &backend, &generics, &mut broken) {
                    params.push(param);
                }
            }
        }
    }
    if let Some(variadic) = &item.sig.variadic {
        cx.error_spanned_by(variadic, "a test takes no variadic arguments");
    }

    let mut test_attrs = Vec::new();
    let mut kept = Vec::new();
    for attr in std::mem::take(&mut item.attrs) {
        let path = attr.path();
        if path.is_ident("ignore") || path.is_ident("should_panic") {
            test_attrs.push(attr);
        } else if path.segments.last().is_some_and(|s| s.ident == "test") {
            cx.error_spanned_by(&attr, "`#[statefold::test]` makes the tests: remove this attribute");
        } else {
            kept.push(attr);
        }
    }
    item.attrs = kept;

    // The bound goes beside the parameter's own, if any (clippy flags
    // bounds split between a parameter and a where clause).
    let bound: syn::TypeParamBound = syn::parse2(quote!(#krate::testing::TestBackend)).ok()?;
    if !declared {
        item.sig.generics.params.push(GenericParam::Type(syn::TypeParam::from(backend.clone())));
    }
    for param in &mut item.sig.generics.params {
        if let GenericParam::Type(ty) = param {
            if ty.ident == backend {
                ty.bounds.push(bound.clone());
            }
        }
    }
    Some(Prepared { item, params, test_attrs, broken })
}

/// Checks one parameter's type, completing `Store<M>` to `Store<M, B>` and
/// `TestDatabase` to `TestDatabase<B>`. Sets `broken` when the type is left
/// so that the function would not compile even with the error reported.
fn parameter(cx: &Ctxt, ty: &mut Type, backend: &Ident, generics: &[Ident], broken: &mut bool) -> Option<Param> {
    if let Type::Reference(reference) = ty {
        // Completed all the same, so that the function still compiles.
        if let Err(Mistake { compiles: false, .. }) = complete(&mut reference.elem, backend, generics) {
            *broken = true;
        }
        cx.error_spanned_by(
            &*reference,
            "a test takes its parameters by value: each run gets stores of its own, remove the `&`",
        );
        return None;
    }
    match complete(ty, backend, generics) {
        Ok(param) => Some(param),
        Err(mistake) => {
            *broken |= !mistake.compiles;
            cx.error_spanned_by(mistake.at, mistake.message);
            None
        }
    }
}

/// Why a parameter's type cannot be provided, and where.
struct Mistake {
    at: TokenStream,
    message: String,
    /// Whether the function still compiles with the type as it is.
    compiles: bool,
}

/// `generics` are the test's other type parameters: a store on one of them
/// does not compile, as nothing bounds it.
fn complete(ty: &mut Type, backend: &Ident, generics: &[Ident]) -> Result<Param, Mistake> {
    let unsupported = |at: &dyn ToTokens| {
        let shown = shown(at);
        Mistake {
            at: at.to_token_stream(),
            message: format!(
                "`#[statefold::test]` cannot provide a `{shown}`: a test takes stores (`Store<Order>`) \
                 and its database (`TestDatabase`)"
            ),
            compiles: true,
        }
    };
    let path = match ty {
        Type::Path(path) if path.qself.is_none() => &mut path.path,
        other => return Err(unsupported(&*other)),
    };
    let at_path = path.to_token_stream();
    let Some(last) = path.segments.last_mut() else { return Err(unsupported(&at_path)) };
    let (kind, machines) = match last.ident.to_string().as_str() {
        "Store" => (Param::Store, 1),
        "TestDatabase" => (Param::Database, 0),
        _ => return Err(unsupported(&at_path)),
    };
    let name = last.ident.to_string();
    let broken = |at: TokenStream, message: String| Mistake { at, message, compiles: false };
    if let PathArguments::None = last.arguments {
        if machines > 0 {
            return Err(broken(last.to_token_stream(), "`Store` needs its machine: `Store<Order>`".into()));
        }
        let mut args = Punctuated::new();
        args.push(GenericArgument::Type(Type::Verbatim(backend.to_token_stream())));
        last.arguments = PathArguments::AngleBracketed(syn::AngleBracketedGenericArguments {
            colon2_token: None,
            lt_token: Token![<](Span::call_site()),
            args,
            gt_token: Token![>](Span::call_site()),
        });
        return Ok(kind);
    }
    let PathArguments::AngleBracketed(arguments) = &mut last.arguments else {
        return Err(broken(last.to_token_stream(), format!("`{name}` takes angle-bracketed arguments")));
    };
    let count = arguments.args.len();
    if count == machines {
        arguments.args.push(GenericArgument::Type(Type::Verbatim(backend.to_token_stream())));
        return Ok(kind);
    }
    if count == machines + 1 {
        let given = &arguments.args[machines];
        let is_backend =
            matches!(given, GenericArgument::Type(Type::Path(p)) if p.qself.is_none() && p.path.is_ident(backend));
        if is_backend {
            return Ok(kind);
        }
        let example =
            if machines == 1 { "`Store<Order>`, or `Store<Order, B>`" } else { "`TestDatabase`, or `TestDatabase<B>`" };
        let message = format!(
            "the backend is the test's: write {example} with `B` the test's type parameter \
             (`backends(..)` chooses the backends)"
        );
        let generic =
            matches!(given, GenericArgument::Type(Type::Path(p)) if generics.iter().any(|g| p.path.is_ident(g)));
        return Err(Mistake { at: given.to_token_stream(), message, compiles: !generic });
    }
    let expected =
        if machines == 1 { "its machine, and optionally the test's backend" } else { "at most the test's backend" };
    Err(broken(arguments.to_token_stream(), format!("`{name}` takes {expected}")))
}

/// Tokens as a person writes them: `statefold::sqlx::SqlitePool`, not `statefold :: sqlx :: SqlitePool`.
fn shown(tokens: &dyn ToTokens) -> String {
    let text = tokens.to_token_stream().to_string();
    [(" :: ", "::"), (":: ", "::"), (" <", "<"), ("< ", "<"), (" >", ">"), (" ,", ","), ("& ", "&")]
        .iter()
        .fold(text, |text, (from, to)| text.replace(from, to))
}

fn emit(options: &Options, prepared: Prepared) -> TokenStream {
    let Prepared { item, params, test_attrs, .. } = prepared;
    let krate = &options.krate;
    let name = &item.sig.ident;
    let vis = &item.vis;
    let output = match &item.sig.output {
        ReturnType::Default => quote!(),
        ReturnType::Type(arrow, ty) => quote!(#arrow #ty),
    };
    let schema = match &options.migrations {
        Some(dir) => quote!(#krate::testing::__private::Schema::Migrations(
            ::core::concat!(::core::env!("CARGO_MANIFEST_DIR"), "/", #dir)
        )),
        None => quote!(#krate::testing::__private::Schema::Tables),
    };
    let args: Vec<TokenStream> = params
        .iter()
        .map(|param| match param {
            Param::Store => quote!(__db.__store().await),
            Param::Database => quote!(::core::clone::Clone::clone(&__db)),
        })
        .collect();
    let required = required();
    let user_ignores = test_attrs.iter().any(|a| a.path().is_ident("ignore"));
    let test_name = name.to_string();

    let chosen: Vec<(BackendKind, Option<&Ident>)> = match &options.backends {
        Some(listed) => listed.iter().map(|(b, ident)| (*b, Some(ident))).collect(),
        None => BACKENDS.iter().map(|b| (*b, None)).collect(),
    };
    let mut watched = vec![quote!(::core::option_env!("CI")), quote!(::core::option_env!(#REQUIRE_ALL))];
    let tests = chosen.iter().map(|(backend, listed)| {
        let span = listed.map_or(Span::call_site(), Spanned::span);
        // The whole invocation at the backend's name, where a missing
        // feature's error then points.
        let gate = format_ident!("__on_{}", backend.name, span = span);
        let gate = respan(quote!(#krate::#gate), span);
        let how = if listed.is_some() { quote!(listed) } else { quote!(implied) };
        let test = format_ident!("{}", backend.name);
        let ty = format_ident!("{}", backend.ty);
        let ignore = match backend.url_var {
            Some(var) => {
                watched.push(quote!(::core::option_env!(#var)));
                let unset = std::env::var(var).map_or(true, |url| url.is_empty());
                (unset && !required && !user_ignores).then(|| {
                    let reason = format!("{var} is unset: set it to a {} server to run this test", backend.server);
                    quote!(#[ignore = #reason])
                })
            }
            None => None,
        };
        quote_spanned! {span=>
            #gate! { #how
                #[test]
                #ignore
                #(#test_attrs)*
                fn #test() #output {
                    #krate::testing::__private::run::<#krate::#ty, _, _>(#test_name, #schema, |__db| async move {
                        super::#name::<#krate::#ty>(#(#args),*).await
                    })
                }
            }
        }
    });
    let tests: Vec<TokenStream> = tests.collect();
    let watched_count = watched.len();
    let doc = format!("The tests of `{name}`, one per backend.");
    quote! {
        #[cfg_attr(not(test), allow(dead_code))]
        #item

        #[doc = #doc]
        #vis mod #name {
            #[allow(unused_imports)]
            use super::*;

            // The tests are ignored or not by these variables' values when
            // built: naming them here has cargo rebuild when they change.
            const _: [::core::option::Option<&str>; #watched_count] = [#(#watched),*];

            #(#tests)*
        }
    }
}

/// Whether a backend whose URL is unset fails rather than being ignored.
fn required() -> bool {
    match std::env::var(REQUIRE_ALL) {
        Ok(value) if !value.is_empty() => value != "0" && value != "false",
        _ => std::env::var_os("CI").is_some(),
    }
}

/// `tokens`, every one of them at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut group = Group::new(group.delimiter(), respan(group.stream(), span));
                group.set_span(span);
                TokenTree::Group(group)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}
