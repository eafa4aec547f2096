//! Compile-time behaviour of `#[derive(Machine)]` and `#[statefold::test]`: what compiles, and the
//! exact errors for what does not. Regenerate `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p statefold-ui --test ui`, then read the diff.

#[test]
fn ui() {
    // trybuild builds statefold and its dependencies again, in a target
    // directory of its own; fixtures need no debug info, and without it that
    // build (and linking each pass fixture) takes markedly less time.
    std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "0");
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    for topic in [
        "shape",
        "attr",
        "states",
        "names",
        "columns",
        "transitions",
        "store",
        "paths",
        "reporting",
        "evolution",
        "test",
    ] {
        t.compile_fail(format!("{topic}/*.rs"));
    }
}
