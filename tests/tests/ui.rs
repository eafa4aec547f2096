//! Compile-time behaviour of `#[derive(Machine)]`: what compiles, and the
//! exact errors for what does not. Regenerate `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p statefold-tests --test ui`, then read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    for topic in ["shape", "attr", "states", "names", "columns", "transitions", "reporting"] {
        t.compile_fail(format!("ui/{topic}/*.rs"));
    }
}
