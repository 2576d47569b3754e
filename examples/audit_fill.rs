//! Benchmark helper: append N audit entries to a repository (operator identity), as N commands
//! would, so `bench/run.sh` can time `custodian audit verify` on a long log.
//!
//!   cargo run --release --example audit_fill -- REPO IDENTITY N STATE_DIR

use custodian::audit::{Intent, Local};
use custodian::repository::{Credential, Repository};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, identity, n, state] =
        <[String; 4]>::try_from(args).map_err(|_| "usage: audit_fill REPO IDENTITY N STATE_DIR")?;
    let n: u64 = n.parse()?;
    let backend = custodian::backend::open(&repo)?;
    let repo = Repository::open(backend, &Credential::Operator(PathBuf::from(identity)))?;
    let local = Local::new(PathBuf::from(state).join("audit"));
    let started = std::time::Instant::now();
    for i in 0..n {
        let intent = Intent::read("restore", &format!("bench entry {i}")).source(Some("bench"));
        custodian::audit::append(&repo, &intent, Some(&local))?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "appended {n} entries in {secs:.1}s ({:.0} per second)",
        n as f64 / secs
    );
    Ok(())
}
