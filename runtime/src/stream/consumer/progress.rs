//! A rebuild's progress bar.

/// A rebuild's progress bar, drawn only on a terminal.
pub(super) struct Progress {
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(super) fn hidden() -> Self {
        Self {
            #[cfg(feature = "progress")]
            bar: None,
        }
    }

    #[cfg_attr(not(feature = "progress"), allow(clippy::unnecessary_wraps, unused_variables))]
    pub(super) fn new(total: u64) -> Self {
        #[cfg(feature = "progress")]
        {
            use std::io::IsTerminal;
            if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(total);
                if let Ok(style) =
                    indicatif::ProgressStyle::with_template("rebuild {bar:40} {pos}/{len} events, {per_sec}, eta {eta}")
                {
                    bar.set_style(style);
                }
                return Self { bar: Some(bar) };
            }
        }
        Self::hidden()
    }

    pub(super) fn inc(&self) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub(super) fn finish(&self) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
