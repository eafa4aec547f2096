//! The derive never panics, whatever it is given: malformed declarations end
//! in `compile_error!`, valid ones in code without it.

use crate::expand;

fn expand_str(src: &str) -> String {
    let input: syn::DeriveInput = syn::parse_str(src).expect("the fixture parses as an item");
    expand::derive(&input).to_string()
}

#[test]
fn valid_declarations_expand_without_errors() {
    for src in [
        "enum A { #[initial] X }",
        "enum A { #[initial] #[from(X)] X { n: i64 } }",
        "#[machine(table = \"t\", events_table = \"e\", id = String)] enum A { #[initial] X, #[from(X)] Y }",
        "enum A { #[initial] X { #[column(json)] v: Vec<String> }, #[from(X, Y)] Y { #[column(json)] v: Vec<String> } }",
        "#[machine()] enum A { #[initial] X }",
        "pub(crate) enum A { #[initial] #[state(name = \"x1\", was = \"x0\")] X }",
        "enum A { #[initial] #[serde(rename_all = \"camelCase\")] X { #[serde(default, rename = \"b\", alias = \"c\")] a: i64 } }",
        "enum A { #[initial] #[event(version = 3, upcast(2 => g, 1 => f))] X { a: Option<i64> } }",
        "#[serde(tag = \"t\")] enum A { #[initial] X }",
    ] {
        let out = expand_str(src);
        assert!(!out.contains("compile_error"), "{src} expanded with an error");
    }
}

#[test]
fn malformed_declarations_error_without_panicking() {
    let cases = [
        "struct A;",
        "union U { a: u8 }",
        "enum A {}",
        "enum A<T> { #[initial] X(T) }",
        "enum A<'a> where Self: 'a { #[initial] X { s: &'a str } }",
        "enum A { X }",
        "enum A { #[initial] X(i64, i64) }",
        "enum A { #[initial] X = 3 }",
        "enum A { #[initial] #[from] X }",
        "enum A { #[initial] #[from = \"X\"] X }",
        "enum A { #[initial] #[from(1, 2)] X }",
        "enum A { #[initial] #[from(X::Y)] X }",
        "enum A { #[initial] #[from(X,,)] X }",
        "enum A { #[initial()] X }",
        "enum A { #[initial = 1] X }",
        "#[machine] enum A { #[initial] X }",
        "#[machine(table)] enum A { #[initial] X }",
        "#[machine(table = 1)] enum A { #[initial] X }",
        "#[machine(table = \"\")] enum A { #[initial] X }",
        "#[machine(id)] enum A { #[initial] X }",
        "#[machine(id = 5)] enum A { #[initial] X }",
        "#[machine(table = \"x\", table = \"x\")] enum A { #[initial] X }",
        "enum A { #[initial] #[state] X }",
        "enum A { #[initial] #[state(name)] X }",
        "enum A { #[initial] #[state(name = \"\")] X }",
        "enum A { #[initial] #[state(was = 1)] X }",
        "enum A { #[initial] X { #[column] a: i64 } }",
        "enum A { #[initial] X { #[column(json, json)] a: i64 } }",
        "enum A { #[initial] X { #[column(json = true)] a: i64 } }",
        "enum A { #[initial] X { id: i64, status: i64, version: i64 } }",
        "enum A { #[initial] X { a: i64 }, #[from(X)] Y { a: u8 }, #[from(Y)] Z { a: String } }",
        "enum A { #[initial] X, #[from(Q)] Y, #[from(Y)] Z, W }",
        "enum Ünïcode { #[initial] X }",
        "enum A { #[initial] X { Big: i64 } }",
        "enum A { #[initial] X { #[serde] a: i64 } }",
        "enum A { #[initial] X { #[serde = 1] a: i64 } }",
        "enum A { #[initial] X { #[serde(flatten, skip, with = \"m\", rename(serialize = \"b\"))] a: i64 } }",
        "enum A { #[initial] X { #[serde(rename = 1)] a: i64 } }",
        "enum A { #[initial] X { #[serde(rename = \"b\", rename = \"c\")] a: i64 } }",
        "enum A { #[initial] X { a: i64, #[serde(alias = \"a\")] b: i64 } }",
        "enum A { #[initial] #[serde(rename_all = \"shouting\", default)] X { a: i64 } }",
        "enum A { #[initial] #[serde(rename_all(serialize = \"camelCase\"))] X { a: i64 } }",
        "enum A { #[initial] #[event] X }",
        "enum A { #[initial] #[event(version)] X }",
        "enum A { #[initial] #[event(version = 0)] X }",
        "enum A { #[initial] #[event(version = \"2\")] X }",
        "enum A { #[initial] #[event(version = 99999999999)] X }",
        "enum A { #[initial] #[event(version = 3, upcast(1 => f))] X }",
        "enum A { #[initial] #[event(version = 2, upcast(1 => f, 1 => g, 0 => h, 2 => i))] X }",
        "enum A { #[initial] #[event(version = 2, upcast(1 => f), upcast(1 => f))] X }",
        "enum A { #[initial] #[event(version = 2, upcast(1 f))] X }",
        "enum A { #[initial] #[event(upcast(1 => f))] X }",
        "enum A { #[initial] #[event(version = 2, upcast = f)] X }",
        "enum A { #[initial] #[event(since = 2)] X }",
        "#[event(version = 2)] enum A { #[initial] X }",
    ];
    for src in cases {
        let out = expand_str(src);
        assert!(out.contains("compile_error"), "{src} expanded without an error");
    }
}

#[test]
fn generated_docs_use_the_right_article() {
    let loan = expand_str("enum Loan { #[initial] Borrowed }");
    assert!(loan.contains("The status of a [`Loan`] record"), "{loan}");
    let order = expand_str("enum Order { #[initial] Placed }");
    assert!(order.contains("The status of an [`Order`] record"), "{order}");
}

#[test]
fn every_generated_path_goes_through_the_named_crate() {
    let out = expand_str("#[machine(crate = \"sf\")] enum A { #[initial] X { n: i64 }, #[from(X)] Y }");
    assert!(out.contains("use sf :: __private :: runtime as __statefold_a_runtime"), "{out}");
    assert!(!out.contains(":: statefold"), "a path escaped the alias: {out}");
}
