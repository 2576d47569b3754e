//! Memory back to the system between runs. A backup frees its buffers, index and caches when it
//! ends, but glibc keeps freed pages in its arenas (one per thread that allocated), so an idle
//! daemon would go on holding its peak for months.

/// Give freed heap pages back to the kernel (glibc's `malloc_trim`, every arena); nothing on
/// other C libraries, whose allocators return memory on their own terms.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
