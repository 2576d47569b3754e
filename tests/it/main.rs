//! Every integration test, in one binary (as ripgrep does): it links once, and `common` is
//! shared instead of compiled into each. The tests drive the real `custodian` binary; S3 tests
//! talk to moto and s3s-fs on loopback (scripts/test starts them). Narrow a run with a module
//! path: `cargo test --test it handover::` (or `CUSTODIAN_TEST_TARGETS="--test it" scripts/test
//! handover::`).

/// Helpers: a scratch world (repository, keys, state dir), S3 test servers, a fault proxy, a
/// forger, exact tree comparison, headless Chromium.
mod common;

// The promise: what the server can and cannot read, and what leaks.
/// The audit log and the access registry.
mod audit;
/// Forgers holding only the writer credential, or no key.
mod hostile;
/// Whoever can write to the storage but holds no key.
mod hostile_storage;
/// The writer credential writes but never reads; nothing leaks into the repository.
mod write_only;

// Backup and restore, exactly.
/// A damaged repository never yields wrong bytes.
mod damage;
/// Repositories written by earlier format versions still read.
mod fixtures;
/// Unreadable or vanishing files are reported and skipped.
mod partial_source;
/// Restore brings back content, modes, times and links exactly.
mod restore_exact;

// Storage: every backend, S3 and its faults.
/// One behaviour suite for every backend.
mod backend_conformance;
/// `custodian copy` between local disk and S3.
mod copy;
/// A flaky network between custodian and S3.
mod s3_faults;
/// Every core command on S3 as on local disk.
mod s3_roundtrip;
/// A store that ignores create-if-absent.
mod s3_safe_mode;

// Crash safety.
/// `kill -9` at any point of a backup.
mod crash;
/// Full disks, unwritable state dirs, faults beyond kills.
mod faults;
/// Random kills while the store changes.
mod soak;
/// Every write and delete of a command is a safe kill point.
mod sweep;

// Retention, destruction, handover.
/// Right to erasure.
mod erase;
/// One store handed to a new owner.
mod handover;
/// Two-phase prune.
mod prune;
/// forget, holds and destruction records.
mod retention;

// The service and the people who run it.
/// The daemon: real signals, the real metrics endpoint.
mod daemon;
/// README's demo.
mod demo;
/// Restore drills.
mod drill;
/// The incident responder's tools.
mod incident;
/// Operator experience: README's promises to someone in an incident.
mod operator;

// Hostile input.
/// Bad input gets one clear paragraph and a non-zero exit.
mod bad_input;
/// No panic on any byte string.
mod fuzz;
