//! Each timed run in a process of its own: the benchmark starts this binary
//! again with `--side` and `--url`; the child runs that side once and prints
//! one line, `RESULT <rate> <peak KiB>`, the peak being its own resident set.

use crate::{catchup, effects, transitions, Bench, BoxError, Db, Options, Side, RUN_LIMIT};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one child measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// Commands or events per second.
    pub(crate) rate: f64,
    /// Peak resident set of the whole child process, in MiB.
    pub(crate) peak_mib: f64,
}

/// Child mode: runs `side` once against `url`, prints its figures.
pub(crate) async fn serve(options: &Options, side: Side, url: &str) -> Result<(), BoxError> {
    let [db] = options.backends[..] else { return Err("child mode takes one --backend".into()) };
    let rate = match options.bench {
        Bench::Transitions => {
            let [clients] = options.clients[..] else { return Err("child mode takes one --clients".into()) };
            let [workload] = options.workloads[..] else { return Err("child mode takes one --workload".into()) };
            transitions::side(db, side, url, workload, clients, options.orders).await?
        }
        Bench::Catchup => catchup::side(db, side, url, options.events, options.batch).await?,
        Bench::Effects => {
            let [clients] = options.clients[..] else { return Err("child mode takes one --clients".into()) };
            effects::side(db, side, url, clients, options.orders).await?
        }
        Bench::Latency | Bench::Relay | Bench::Grpc | Bench::All => {
            return Err("child mode runs transitions, catchup or effects".into())
        }
    };
    println!("RESULT {rate} {}", peak_kib()?);
    Ok(())
}

/// This process's peak resident set (`VmHWM`), in KiB.
fn peak_kib() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/self/status (Linux only)".into())
}

/// The arguments that make this binary run one side once.
pub(crate) fn args(bench: &str, db: Db, side: Side, url: &str, rest: &[String]) -> Vec<String> {
    let mut args: Vec<String> =
        ["--bench", bench, "--backend", db.flag(), "--side", side.flag(), "--url", url].map(String::from).into();
    args.extend_from_slice(rest);
    args
}

/// Runs this binary with `args` and reads its figures; kills it if it
/// outlives [`RUN_LIMIT`] by a margin.
pub(crate) async fn spawn(args: &[String]) -> Result<Run, BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let deadline = Instant::now() + RUN_LIMIT + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            return Err(format!("a child ran past {RUN_LIMIT:?}: {}", args.join(" ")).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout)?;
    }
    if !status.success() {
        return Err(format!("a child failed ({status}): {}", args.join(" ")).into());
    }
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).ok_or("a child printed no RESULT line")?;
    let mut fields = line.split_whitespace();
    let rate: f64 = fields.next().ok_or("no rate")?.parse()?;
    let peak_kib: f64 = fields.next().ok_or("no peak")?.parse()?;
    Ok(Run { rate, peak_mib: peak_kib / 1024.0 })
}
