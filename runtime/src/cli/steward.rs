//! What `verify`, `audit` and `repair` run for each registered machine,
//! on whichever backend a database URL names.

use super::{lower_scheme, shown_scheme, CliError, DialectArg};
use crate::{AuditReport, Error, Machine, RepairOptions, RepairReport};
use futures::future::BoxFuture;

/// The URL, its scheme in lower case, once it names a known backend.
pub(super) fn checked_url(url: &str) -> Result<String, CliError> {
    DialectArg::of_url(url).ok_or_else(|| CliError::UnknownUrl { scheme: shown_scheme(url) })?;
    Ok(lower_scheme(url))
}

/// Runs `$body` with `$store`, a store of machine `$m` on the backend `$url` names.
macro_rules! steward_store {
    ($m:ty, $url:expr, $store:ident => $body:expr) => {{
        let url: String = $url;
        match DialectArg::of_url(&url) {
            #[cfg(feature = "sqlite")]
            Some(DialectArg::Sqlite) => {
                let $store = crate::Store::<$m, crate::Sqlite>::connect(&url).await?;
                $body
            }
            #[cfg(feature = "postgres")]
            Some(DialectArg::Postgres) => {
                let $store = crate::Store::<$m, crate::Postgres>::connect(&url).await?;
                $body
            }
            #[cfg(feature = "mysql")]
            Some(DialectArg::Mysql) => {
                let $store = crate::Store::<$m, crate::MySql>::connect(&url).await?;
                $body
            }
            // The URL was checked; a backend left out of the build cannot connect.
            _ => Err(Error::InvalidUrl {
                backend: "statefold",
                reason: "this binary was built without that backend's feature".to_owned(),
            }),
        }
    }};
}

/// A repair's progress bar on a terminal (feature `progress`), or nothing.
pub(super) fn progress(machine: &'static str) -> Progress {
    #[cfg(feature = "progress")]
    {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template("repair {msg} {bar:40} {pos}/{len} records") {
                bar.set_style(style);
            }
            bar.set_message(machine);
            return Box::new(move |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            });
        }
    }
    let _ = machine;
    Box::new(|_, _| {})
}

/// What the `audit` and `repair` commands run for one machine, whichever
/// backend the URL names.
#[derive(Debug, Clone, Copy)]
pub(super) struct Steward {
    pub(super) verify: fn(String) -> BoxFuture<'static, Result<(), Error>>,
    pub(super) audit: fn(String) -> BoxFuture<'static, Result<AuditReport, Error>>,
    pub(super) repair: fn(String, RepairOptions, Progress) -> BoxFuture<'static, Result<RepairReport, Error>>,
}

/// Called after each record a repair examined: `(done, total)`.
pub(super) type Progress = Box<dyn FnMut(usize, usize) + Send>;

impl Steward {
    pub(super) fn of<M: Machine>() -> Self {
        Self {
            verify: |url| Box::pin(async move { steward_store!(M, url, store => store.check_schema().await) }),
            audit: |url| Box::pin(async move { steward_store!(M, url, store => store.audit().await) }),
            repair: |url, options, progress| {
                Box::pin(async move { steward_store!(M, url, store => store.repair_with(options, progress).await) })
            },
        }
    }
}
