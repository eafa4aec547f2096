//! Collects every error of one derive so they are reported together.

use quote::ToTokens;
use std::cell::RefCell;
use std::fmt::Display;

/// Error sink threaded through parse and check. Dropping it without calling
/// [`Ctxt::check`] is a bug in the macro, so it panics.
pub(crate) struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Self { errors: RefCell::new(Some(Vec::new())) }
    }

    /// Records an error spanned by the tokens of `obj`.
    pub(crate) fn error_spanned_by<A: ToTokens, T: Display>(&self, obj: A, msg: T) {
        self.syn_error(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// Records an error at `span`.
    pub(crate) fn error_at<T: Display>(&self, span: proc_macro2::Span, msg: T) {
        self.syn_error(syn::Error::new(span, msg));
    }

    /// Records a parse error.
    pub(crate) fn syn_error(&self, err: syn::Error) {
        self.errors.borrow_mut().as_mut().expect("Ctxt used after check").push(err);
    }

    /// Every recorded error folded into one, if any.
    pub(crate) fn check(self) -> Option<syn::Error> {
        let errors = self.errors.borrow_mut().take().expect("Ctxt checked twice");
        errors.into_iter().reduce(|mut all, next| {
            all.combine(next);
            all
        })
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("forgot to check for errors");
        }
    }
}
