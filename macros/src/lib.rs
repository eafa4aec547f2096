//! The `Machine` derive and the `#[statefold::test]` attribute of [statefold](https://docs.rs/statefold).
//!
//! Depend on `statefold`, which re-exports the derive and holds everything the
//! generated code refers to. The pipeline is parse (`ast`, `attr`) -> check
//! (`check`) -> expand (`expand`, `diagram`); errors from every stage are
//! collected in one `Ctxt` and reported together.

mod ast;
mod attr;
mod check;
mod ctxt;
mod diagram;
mod expand;
mod test_attr;

use proc_macro::TokenStream;

/// Derives `statefold::Machine`. Documented in the `statefold` crate.
#[proc_macro_derive(Machine, attributes(machine, initial, from, state, column, event, serde))]
pub fn derive_machine(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}

/// `#[statefold::test]`: an `async fn` taking stores, run as one test per
/// backend in a fresh database. Documented in the `statefold` crate.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    test_attr::expand(args.into(), item.into()).into()
}

#[cfg(test)]
mod tests;
