//! Compile-time behaviour of `#[derive(Machine)]`: what compiles, and the
//! exact errors for what does not. Regenerate `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p statefold-ui --test ui`, then read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    for topic in ["shape", "attr", "states", "names", "columns", "transitions", "store", "paths", "reporting"] {
        t.compile_fail(format!("{topic}/*.rs"));
    }
}
