//! The change summary each backup records, and the ransomware flag. Ransomware rewrites many
//! files in place with encrypted, incompressible bytes; a backup sees that as a large share of
//! files modified (or deleted and re-added) whose content went from compressible to high
//! entropy. Entropy is estimated on the reader threads from a sample of each chunk, so it covers
//! deduplicated chunks too and costs little.

use crate::format::snapshot::ChangeSummary;

/// When a backup is flagged suspicious. Defaults are deliberately coarse: a normal day changes
/// a few percent of files, an encryption run most of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnomalyThresholds {
    /// No verdict below this many known files (small stores swing widely).
    pub min_files: u64,
    /// Share of known files modified or deleted…
    pub changed_share: f64,
    /// …together with this share of the modified, formerly compressible bytes turned
    /// incompressible.
    pub incompressible_share: f64,
    /// Or this share of known files deleted, whatever the content.
    pub deleted_share: f64,
}

impl Default for AnomalyThresholds {
    fn default() -> Self {
        AnomalyThresholds {
            min_files: 20,
            changed_share: 0.25,
            incompressible_share: 0.5,
            deleted_share: 0.5,
        }
    }
}

/// Bytes sampled per chunk for the entropy estimate.
const SAMPLE: usize = 4096;
/// Above this many bits per byte a sample counts as incompressible (zstd output and ciphertext
/// sit near 8; text and most documents below 6).
const HIGH_ENTROPY_BITS: f64 = 7.5;

/// Whether `chunk` looks incompressible (encrypted or already compressed).
pub fn high_entropy(chunk: &[u8]) -> bool {
    let sample = &chunk[..chunk.len().min(SAMPLE)];
    if sample.len() < 256 {
        return false;
    }
    let mut counts = [0u32; 256];
    for &b in sample {
        counts[b as usize] += 1;
    }
    let n = sample.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    bits > HIGH_ENTROPY_BITS
}

/// Counts gathered during a backup.
#[derive(Default)]
pub struct ChangeTracker {
    pub summary: ChangeSummary,
}

impl ChangeTracker {
    pub fn added(&mut self) {
        self.summary.files_added += 1;
    }

    /// A known file read again: `was_incompressible` from the cache, `high_bytes` of `len` now.
    pub fn modified(&mut self, len: u64, high_bytes: u64, was_incompressible: bool) {
        self.summary.files_modified += 1;
        self.summary.bytes_modified += len;
        if !was_incompressible {
            self.summary.bytes_were_compressible += len;
            if high_bytes * 2 > len {
                self.summary.bytes_became_incompressible += len;
            }
        }
    }

    /// Decide, with `before` files known and `deleted` of them gone.
    pub fn finish(mut self, before: u64, deleted: u64, t: &AnomalyThresholds) -> ChangeSummary {
        let s = &mut self.summary;
        s.files_before = before;
        s.files_deleted = deleted;
        if before >= t.min_files {
            let changed = (s.files_modified + s.files_deleted) as f64 / before as f64;
            let turned = if s.bytes_were_compressible == 0 {
                0.0
            } else {
                s.bytes_became_incompressible as f64 / s.bytes_were_compressible as f64
            };
            if changed >= t.changed_share && turned >= t.incompressible_share {
                s.reasons.push(format!(
                    "{:.0}% of files changed and {:.0}% of the changed bytes turned incompressible",
                    changed * 100.0,
                    turned * 100.0
                ));
            }
            let deleted_share = s.files_deleted as f64 / before as f64;
            if deleted_share >= t.deleted_share {
                s.reasons
                    .push(format!("{:.0}% of files deleted", deleted_share * 100.0));
            }
        }
        s.suspicious = !s.reasons.is_empty();
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_low_entropy_and_random_is_high() {
        let text = "id,name,balance\n42,Jane Doe,1200.50\n".repeat(200);
        assert!(!high_entropy(text.as_bytes()));
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(high_entropy(&noise));
    }

    #[test]
    fn an_encryption_run_is_flagged_and_a_normal_day_is_not() {
        let t = AnomalyThresholds::default();
        let mut day = ChangeTracker::default();
        for _ in 0..5 {
            day.modified(1000, 0, false);
        }
        assert!(!day.finish(100, 1, &t).suspicious);
        let mut attack = ChangeTracker::default();
        for _ in 0..50 {
            attack.modified(1000, 1000, false);
        }
        let s = attack.finish(100, 0, &t);
        assert!(s.suspicious, "{s:?}");
        assert_eq!(s.reasons.len(), 1);
        // Scans that were already incompressible do not count as turning so.
        let mut rescan = ChangeTracker::default();
        for _ in 0..50 {
            rescan.modified(1000, 1000, true);
        }
        assert!(!rescan.finish(100, 0, &t).suspicious);
    }
}
