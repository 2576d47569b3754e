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
