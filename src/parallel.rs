//! One parallel loop for the engine: restore, check and copy each hand out items to a few
//! threads that stop at the first failure. Written once here instead of four times.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Run `f` on every item on `workers` threads (at least one), items handed out in order. After
/// a failure no new item starts; the first error is returned.
pub fn for_each<T: Sync>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if let Err(e) = f(item) {
                        failed.store(true, Ordering::SeqCst);
                        if let Ok(mut slot) = first.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    match first.into_inner() {
        Ok(Some(e)) => Err(e),
        Ok(None) => Ok(()),
        Err(_) => Err(Error::Internal(
            "internal error: a worker thread panicked".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_and_the_first_failure_stops_the_rest() {
        let items: Vec<u32> = (0..1000).collect();
        let seen = Mutex::new(Vec::new());
        for_each(&items, 4, |i| {
            seen.lock().unwrap().push(*i);
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, items);

        let started = AtomicUsize::new(0);
        let err = for_each(&items, 2, |i| {
            started.fetch_add(1, Ordering::SeqCst);
            if *i == 10 {
                Err(Error::Usage(format!("item {i}")))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "item 10");
        // Two workers: at most the item in flight on the other one starts after the failure.
        assert!(started.load(Ordering::SeqCst) <= 13, "{started:?}");
        assert!(for_each(&[] as &[u32], 4, |_| Ok(())).is_ok());
    }
}
