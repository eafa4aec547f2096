//! What the runtime reports, captured for tests: `tracing` output in a
//! buffer, and `metrics` in a recorder, both installed once per test binary.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static METRICS: OnceLock<Snapshotter> = OnceLock::new();

/// Writes log lines into [`LOGS`].
struct Buffer;

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capture (once); call before building what should be observed.
pub fn install() {
    METRICS.get_or_init(|| {
        let _ = tracing_subscriber::fmt().with_writer(|| Buffer).with_ansi(false).try_init();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("no other metrics recorder in this test binary");
        snapshotter
    });
}

/// Every log line captured so far that contains `needle`.
pub fn log_lines(needle: &str) -> Vec<String> {
    let logs = LOGS.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&logs).lines().filter(|line| line.contains(needle)).map(str::to_owned).collect()
}

/// The value of gauge `name` whose labels include every one of `labels`.
pub fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let snapshot = METRICS.get()?.snapshot();
    snapshot.into_vec().into_iter().find_map(|(key, _, _, value)| {
        let key = key.key();
        let matches = key.name() == name
            && labels.iter().all(|(k, v)| key.labels().any(|label| label.key() == *k && label.value() == *v));
        match (matches, value) {
            (true, DebugValue::Gauge(value)) => Some(value.into_inner()),
            _ => None,
        }
    })
}

/// Every counter whose labels include every one of `labels`, by name, as
/// counted since the last look: reading counters resets them, so read
/// them all at once.
pub fn counters(labels: &[(&str, &str)]) -> std::collections::BTreeMap<String, u64> {
    let Some(snapshotter) = METRICS.get() else { return Default::default() };
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let matches =
                labels.iter().all(|(k, v)| key.labels().any(|label| label.key() == *k && label.value() == *v));
            match (matches, value) {
                (true, DebugValue::Counter(value)) => Some((key.name().to_owned(), value)),
                _ => None,
            }
        })
        .collect()
}
