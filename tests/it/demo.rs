//! README's first command: the demo runs the whole job (backup, change, backup, restore, verify,
//! drill, report) on an embedded default and can be run again.

use crate::common;

use common::*;

#[test]
fn the_demo_runs_end_to_end_twice() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = std::process::Command::new(BIN)
            .args(["demo", "--size", "4M", "--dir"])
            .arg(dir.path().join("custodian-demo"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("all steps passed"), "{stdout}");
        assert!(
            stdout.contains("drill            PASS 'whole-store-lost'"),
            "{stdout}"
        );
    }
    let report =
        std::fs::read_to_string(dir.path().join("custodian-demo/drill-report.txt")).unwrap();
    assert!(report.starts_with("PASS"), "{report}");
}
