//! Deterministic sample record stores, for the demo and the benchmark: branches with CSV ledgers,
//! JSON-lines logs, SQLite databases, thousands of small notes, incompressible scans, and files
//! duplicated or nearly duplicated across branches. Same seed and size, same bytes.

use crate::error::{Error, IoContext, Result};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// SplitMix64: tiny, fast, and stable across versions (unlike a library RNG's stream).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const NAMES: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Fischer",
    "Haddad",
    "Novak",
    "García",
    "O'Brien",
    "Kowalski",
    "Zoë Ng",
    "Sørensen",
];
const ITEMS: &[&str] = &[
    "consulting",
    "annual audit",
    "payroll run",
    "VAT return",
    "bookkeeping",
    "tax advice",
    "year-end close",
    "invoice",
];

/// What a generated store holds.
#[derive(Debug, Default)]
pub struct SampleStats {
    pub files: u64,
    pub bytes: u64,
}

struct Gen {
    rng: Rng,
    stats: SampleStats,
}

impl Gen {
    fn write(&mut self, path: &Path, data: &[u8]) -> Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        fs::write(path, data).at(path)?;
        self.stats.files += 1;
        self.stats.bytes += data.len() as u64;
        Ok(())
    }

    fn ledger(&mut self, rows: u64, start_row: u64) -> String {
        let mut s = String::with_capacity(rows as usize * 64);
        if start_row == 0 {
            s.push_str("date,client,reference,description,amount,currency\n");
        }
        for i in start_row..start_row + rows {
            let (m, d) = (1 + self.rng.below(12), 1 + self.rng.below(28));
            let client = self.rng.below(5000);
            let item = ITEMS[self.rng.below(ITEMS.len() as u64) as usize];
            let cents = self.rng.below(2_000_000);
            let _ = writeln!(
                s,
                "2026-{m:02}-{d:02},CUST-{client:05},INV-{i:07},{item},{}.{:02},EUR",
                cents / 100,
                cents % 100
            );
        }
        s
    }

    fn log_lines(&mut self, lines: u64) -> String {
        let mut s = String::with_capacity(lines as usize * 120);
        for _ in 0..lines {
            let t = self.rng.below(86_400);
            let user = NAMES[self.rng.below(NAMES.len() as u64) as usize];
            let action =
                ["opened", "edited", "exported", "printed", "signed"][self.rng.below(5) as usize];
            let _ = writeln!(
                s,
                r#"{{"ts":"2026-11-{:02}T{:02}:{:02}:{:02}Z","user":"{user}","action":"{action}","record":"CUST-{:05}","ok":true}}"#,
                1 + self.rng.below(28),
                t / 3600,
                (t / 60) % 60,
                t % 60,
                self.rng.below(5000)
            );
        }
        s
    }

    fn note(&mut self, client: u64) -> String {
        let name = NAMES[self.rng.below(NAMES.len() as u64) as usize];
        let words = 50 + self.rng.below(600);
        let mut body = String::new();
        for _ in 0..words {
            body.push_str(ITEMS[self.rng.below(ITEMS.len() as u64) as usize]);
            body.push(' ');
        }
        format!("{{\"client\":\"CUST-{client:05}\",\"contact\":\"{name}\",\"note\":\"{body}\"}}\n")
    }

    fn scan(&mut self, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        self.rng.fill(&mut data);
        data[..8].copy_from_slice(b"%PDF-1.7");
        data
    }
}

fn sqlite_db(path: &Path, rng: &mut Rng, rows: u64) -> Result<u64> {
    let fail = |e: rusqlite::Error| {
        Error::Internal(format!("creating sample database {}: {e}", path.display()))
    };
    let mut conn = rusqlite::Connection::open(path).map_err(fail)?;
    conn.execute_batch("PRAGMA journal_mode=DELETE; CREATE TABLE IF NOT EXISTS clients(id INTEGER PRIMARY KEY, name TEXT, email TEXT, balance INTEGER, notes TEXT);")
        .map_err(fail)?;
    let tx = conn.transaction().map_err(fail)?;
    {
        let mut stmt = tx
            .prepare("INSERT INTO clients(name, email, balance, notes) VALUES (?1, ?2, ?3, ?4)")
            .map_err(fail)?;
        for i in 0..rows {
            let name = NAMES[rng.below(NAMES.len() as u64) as usize];
            let notes =
                ITEMS[rng.below(ITEMS.len() as u64) as usize].repeat(1 + rng.below(8) as usize);
            stmt.execute(rusqlite::params![
                name,
                format!("client{i}@example.org"),
                rng.below(1_000_000) as i64,
                notes
            ])
            .map_err(fail)?;
        }
    }
    tx.commit().map_err(fail)?;
    drop(conn);
    Ok(fs::metadata(path).at(path)?.len())
}

/// Generate a store of about `size` bytes under `dir` (which must not exist or be empty).
pub fn generate(dir: &Path, size: u64, seed: u64) -> Result<SampleStats> {
    let mut g = Gen {
        rng: Rng::new(seed),
        stats: SampleStats::default(),
    };
    let branches = if size > 200 << 20 { 4 } else { 2 };
    let per_branch = size / branches;
    let mut shared_scans: Vec<Vec<u8>> = Vec::new();
    for b in 0..branches {
        let root = dir.join(format!("branch-{:02}", b + 1));
        // Ledgers (35%): a few large CSVs; the second branch keeps a near-copy of the first's.
        let ledger_bytes = per_branch * 35 / 100;
        let ledgers = (ledger_bytes / (8 << 20)).clamp(2, 64);
        for l in 0..ledgers {
            let rows = (ledger_bytes / ledgers / 60).max(50);
            let text = g.ledger(rows, 0);
            g.write(
                &root.join(format!("ledgers/ledger-{:04}-{l:02}.csv", 2020 + l % 7)),
                text.as_bytes(),
            )?;
        }
        // Logs (20%).
        let log_bytes = per_branch * 20 / 100;
        let logs = (log_bytes / (16 << 20)).clamp(1, 32);
        for l in 0..logs {
            let text = g.log_lines((log_bytes / logs / 115).max(20));
            g.write(
                &root.join(format!("logs/activity-{l:03}.jsonl")),
                text.as_bytes(),
            )?;
        }
        // Notes (5%): thousands of small files in client folders.
        let note_bytes = per_branch * 5 / 100;
        let notes = (note_bytes / 2500).max(100);
        for n in 0..notes {
            let client = g.rng.below(notes / 4 + 1);
            let text = g.note(client);
            g.write(
                &root.join(format!("clients/CUST-{client:05}/note-{n:05}.json")),
                text.as_bytes(),
            )?;
        }
        // Scans (30%): incompressible; some shared across branches (exact duplicates).
        let scan_bytes = per_branch * 30 / 100;
        let mut written = 0;
        let mut s = 0;
        while written < scan_bytes {
            let data = if b > 0 && s % 4 == 0 && !shared_scans.is_empty() {
                shared_scans[s % shared_scans.len()].clone()
            } else {
                let len = (64 << 10)
                    + g.rng
                        .below(if size > 200 << 20 { 4 << 20 } else { 400 << 10 })
                        as usize;
                g.scan(len)
            };
            written += data.len() as u64;
            g.write(&root.join(format!("scans/scan-{s:04}.pdf")), &data)?;
            if b == 0 && shared_scans.len() < 16 {
                shared_scans.push(data);
            }
            s += 1;
        }
        // SQLite (10%).
        let db = root.join("ledger.sqlite");
        let rows = (per_branch / 10 / 90).max(200);
        g.stats.bytes += sqlite_db(&db, &mut g.rng, rows)?;
        g.stats.files += 1;
    }
    // A near-duplicate: branch 2's copy of branch 1's first ledger with a few edited lines.
    let first = dir.join("branch-01/ledgers/ledger-2020-00.csv");
    if let Ok(text) = fs::read_to_string(&first) {
        let edited = text.replacen("annual audit", "ANNUAL AUDIT", 3);
        g.write(
            &dir.join("branch-02/ledgers/copy-of-branch-01-ledger.csv"),
            edited.as_bytes(),
        )?;
    }
    Ok(g.stats)
}

/// Simulate a day of changes: appended ledger rows and logs, edited and new notes, a few new
/// scans, deleted notes, and updated database rows. Returns the number of files touched.
pub fn mutate(dir: &Path, seed: u64) -> Result<u64> {
    let mut g = Gen {
        rng: Rng::new(seed ^ 0xDA7),
        stats: SampleStats::default(),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut touched = 0;
    for (i, path) in files.iter().enumerate() {
        let name = path.to_string_lossy();
        let roll = g.rng.below(100);
        if name.ends_with(".csv") && roll < 20 {
            let rows = g.ledger(200, 9_000_000 + i as u64);
            append(path, rows.as_bytes())?;
        } else if name.ends_with(".jsonl") && roll < 50 {
            let lines = g.log_lines(2000);
            append(path, lines.as_bytes())?;
        } else if name.contains("/note-") && roll < 2 {
            let text = g.note(i as u64);
            fs::write(path, text).at(path)?;
        } else if name.contains("/note-") && roll < 3 {
            fs::remove_file(path).at(path)?;
        } else if name.ends_with(".sqlite") {
            let conn = rusqlite::Connection::open(path)
                .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
            conn.execute(
                "UPDATE clients SET balance = balance + 1 WHERE id % 97 = 0",
                [],
            )
            .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
        } else {
            continue;
        }
        touched += 1;
    }
    for n in 0..5 {
        let data = g.scan(300 << 10);
        g.write(
            &dir.join(format!("branch-01/scans/new-scan-{n}.pdf")),
            &data,
        )?;
        touched += 1;
    }
    Ok(touched)
}

fn append(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().append(true).open(path).at(path)?;
    f.write_all(data).at(path)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        if entry.file_type().at(&path)?.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_store() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sa = generate(a.path(), 2 << 20, 5).unwrap();
        generate(b.path(), 2 << 20, 5).unwrap();
        assert!(
            sa.files > 200,
            "a demo store should have a few hundred files, got {}",
            sa.files
        );
        let pick = "branch-01/ledgers/ledger-2020-00.csv";
        assert_eq!(
            fs::read(a.path().join(pick)).unwrap(),
            fs::read(b.path().join(pick)).unwrap()
        );
        assert!(mutate(a.path(), 1).unwrap() > 5);
    }
}
