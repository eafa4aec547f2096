//! A short run of the chaos suite (`src/bin/chaos.rs`) on every backend
//! whose URL is set: faults at every point, children killed with SIGKILL,
//! then nothing lost, nothing twice, the audit clean. CI runs the full
//! suite (`chaos --backend all`: 5,000 operations and 20 kills per backend)
//! and prints its lines.

use std::process::Command;

#[test]
fn a_short_chaos_run_loses_nothing() {
    let output = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["--backend", "all", "--ops", "300", "--kills", "3"])
        .output()
        .expect("the chaos binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|line| line.starts_with("chaos: backend=")).collect();
    assert!(lines.iter().any(|line| line.contains("backend=sqlite") && line.contains("lost=0 dup=0")), "{stdout}");
    for line in lines.iter().filter(|line| !line.contains("skipped")) {
        assert!(line.contains("lost=0 dup=0") && line.contains("kills=3"), "{line}");
    }
}
