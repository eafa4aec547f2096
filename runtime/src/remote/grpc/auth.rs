//! Who may read which machine's log: bearer tokens and what each grants.

use futures::future::BoxFuture;
use std::collections::BTreeSet;
use std::fmt;

/// What a token grants: a name for the client (in logs, metrics and the
/// limit of concurrent streams; never the token itself) and the machines
/// whose logs it may read.
///
/// ```
/// use statefold::remote::grpc::Grant;
/// let grant = Grant::new("shipping").machine("orders");
/// assert!(grant.allows("orders"));
/// assert!(!grant.allows("wallets"));
/// assert!(Grant::new("auditor").all_machines().allows("wallets"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    name: String,
    machines: Option<BTreeSet<String>>,
}

impl Grant {
    /// A grant for the client `name`, allowed no machine yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), machines: Some(BTreeSet::new()) }
    }

    /// Also allows the machine registered as `name`.
    #[must_use]
    pub fn machine(mut self, name: impl Into<String>) -> Self {
        if let Some(machines) = &mut self.machines {
            machines.insert(name.into());
        }
        self
    }

    /// Allows every machine the server serves.
    #[must_use]
    pub fn all_machines(mut self) -> Self {
        self.machines = None;
        self
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the machine registered as `machine` may be read.
    pub fn allows(&self, machine: &str) -> bool {
        self.machines.as_ref().is_none_or(|machines| machines.contains(machine))
    }
}

/// Checks a bearer token: what it grants, or `None` when it is unknown
/// (the call is then refused with `UNAUTHENTICATED`). Implement it to ask
/// your own identity service; [`Tokens`] is a static list.
///
/// The token must not be logged, nor put in a grant's name.
pub trait Verifier: Send + Sync + 'static {
    /// What `token` grants, if it is valid.
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Grant>>;
}

/// A static list of bearer tokens, each with its grant. `Debug` shows the
/// grants, never the tokens; tokens are compared in constant time.
///
/// ```
/// use statefold::remote::grpc::{Grant, Tokens};
/// let tokens = Tokens::new().token("s3cr3t-shipping", Grant::new("shipping").machine("orders"));
/// assert!(!format!("{tokens:?}").contains("s3cr3t"));
/// ```
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, Grant)>,
}

impl Tokens {
    /// No token: every call is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token`, granting `grant`.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>, grant: Grant) -> Self {
        self.entries.push((token.into().into_bytes(), grant));
        self
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|(_, grant)| grant)).finish()
    }
}

impl Verifier for Tokens {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<Grant>> {
        // Every entry is compared, each in time independent of where they differ.
        let found =
            self.entries.iter().fold(
                None,
                |found, (known, grant)| {
                    if same(known, token.as_bytes()) {
                        Some(grant.clone())
                    } else {
                        found
                    }
                },
            );
        Box::pin(std::future::ready(found))
    }
}

/// Byte strings compared in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The token of an `authorization: Bearer <token>` value.
pub(super) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_and_constant_time_comparison() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
