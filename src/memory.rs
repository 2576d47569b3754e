//! Memory back to the system. glibc keeps freed pages in its arenas (one per thread that
//! allocated): an idle daemon would go on holding its last backup's peak for months, and a
//! loaded index the index objects its workers decoded on the way.

/// Give freed heap pages back to the kernel (glibc's `malloc_trim`, every arena); nothing on
/// other C libraries, whose allocators return memory on their own terms.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A few large buffers kept for reuse between the threads of one pipeline. glibc serves a
/// pack-sized allocation from fresh pages (a thread's heap that empties is unmapped whole), so
/// every pack filled faulted its 16 MiB in anew: a third of the half a million page faults of a
/// 1.5 GiB backup. A buffer handed back here is filled again instead. At most `count` wait here;
/// the pool is freed with its last clone. (Pooling chunk buffers as well saved nothing measurable
/// and raised peak RSS by 30 MB: glibc reuses those sizes on its own.)
#[derive(Clone)]
pub struct Spares {
    tx: crossbeam_channel::Sender<Vec<u8>>,
    rx: crossbeam_channel::Receiver<Vec<u8>>,
}

impl Spares {
    /// A pool that keeps at most `count` buffers.
    pub fn new(count: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(count);
        Spares { tx, rx }
    }

    /// An empty buffer with room for at least `capacity` bytes: a spare if one is large enough.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        match self.any() {
            Some(spare) if spare.capacity() >= capacity => spare,
            // Too small: dropped, so the pool drifts towards the sizes in use.
            _ => Vec::with_capacity(capacity),
        }
    }

    /// A spare of any size, if one waits.
    pub fn any(&self) -> Option<Vec<u8>> {
        self.rx.try_recv().ok()
    }

    /// Hand `buffer` back; dropped when the pool is full.
    pub fn give(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let _ = self.tx.try_send(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::Spares;

    #[test]
    fn a_spare_is_reused_only_when_large_enough_and_the_pool_stays_bounded() {
        let spares = Spares::new(1);
        let mut first = spares.take(1000);
        first.extend_from_slice(&[7u8; 1000]);
        let at = first.as_ptr();
        spares.give(first);
        spares.give(Vec::with_capacity(10)); // the pool is full: dropped
        let again = spares.take(500);
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        spares.give(again);
        let larger = spares.take(4000);
        assert!(larger.capacity() >= 4000 && larger.is_empty());
        assert_ne!(larger.as_ptr(), at);
    }
}
