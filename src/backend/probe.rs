//! Does the store really honour create-if-absent? Some S3-compatible servers ignore the
//! condition (Garage 2.5 overwrites) and some check it without a lock (s3s-fs lets concurrent
//! writers all "win"). custodian needs to know, so that it never trusts a condition the store does
//! not keep: see docs/DESIGN.md, "Safe mode".

use super::{Backend, BackendError, ErrorKind};

/// The object the sequential probe writes twice; its second write must be refused.
const PROBE: &str = "probe/create-if-absent";
/// Present when `init` saw concurrent create-if-absent writes both succeed.
const RACY_MARKER: &str = "probe/create-if-absent.racy";
/// Concurrent writers in the race probe, and rounds of it: the first round mostly opens
/// connections, which spreads the writers out, so later rounds race harder.
const RACERS: usize = 8;
const ROUNDS: usize = 3;

/// How far a store keeps create-if-absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreateIfAbsent {
    /// Refuses an existing name, even under concurrent writers.
    Atomic,
    /// Refuses an existing name, but concurrent writers can all succeed.
    Racy,
    /// Overwrites: the condition is ignored.
    Ignored,
}

impl CreateIfAbsent {
    /// Whether custodian may rely on the store's condition alone.
    pub fn is_atomic(self) -> bool {
        self == CreateIfAbsent::Atomic
    }
}

/// True if the condition was ignored: a second create of an existing name succeeded.
fn sequential_ignored(backend: &dyn Backend, name: &str) -> Result<bool, BackendError> {
    let first = backend.put_new(name, b"probe 1")?;
    Ok(first && backend.put_new(name, b"probe 2")?)
}

/// The full probe, at `init` (up to 30 requests): a sequential test, then races of
/// [`RACERS`] writers on fresh names. The race verdict is kept in the repository for later opens.
pub fn at_init(backend: &dyn Backend) -> Result<CreateIfAbsent, BackendError> {
    if sequential_ignored(backend, PROBE)? {
        return Ok(CreateIfAbsent::Ignored);
    }
    for _ in 0..ROUNDS {
        if race(backend)? > 1 {
            backend.put_new(
                RACY_MARKER,
                b"concurrent create-if-absent writers all succeeded\n",
            )?;
            return Ok(CreateIfAbsent::Racy);
        }
    }
    Ok(CreateIfAbsent::Atomic)
}

/// How many of [`RACERS`] concurrent creators of one fresh name were told they won.
fn race(backend: &dyn Backend) -> Result<usize, BackendError> {
    let race = format!("probe/race-{}", hex::encode(rand::random::<[u8; 8]>()));
    let wins = std::thread::scope(|s| {
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let race = race.as_str();
                s.spawn(move || backend.put_new(race, format!("racer {i}").as_bytes()))
            })
            .collect();
        let mut wins = 0;
        for racer in racers {
            match racer.join() {
                Ok(Ok(true)) => wins += 1,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(panicked(backend)),
            }
        }
        Ok(wins)
    })?;
    backend.delete(&race)?;
    Ok(wins)
}

/// The cheap probe, at every writer's open (two requests): the sequential test, and the verdict
/// `init` recorded about races.
pub fn at_open(backend: &dyn Backend) -> Result<CreateIfAbsent, BackendError> {
    if backend.put_new(PROBE, b"probe")? && backend.put_new(PROBE, b"probe again")? {
        return Ok(CreateIfAbsent::Ignored);
    }
    match backend.get(RACY_MARKER) {
        Ok(_) => Ok(CreateIfAbsent::Racy),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(CreateIfAbsent::Atomic),
        Err(e) => Err(e),
    }
}

fn panicked(backend: &dyn Backend) -> BackendError {
    BackendError {
        kind: ErrorKind::Permanent,
        operation: "probing",
        object: PROBE.into(),
        location: backend.location(),
        message: "a probe thread panicked".into(),
    }
}
