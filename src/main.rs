//! custodian's entry point; everything lives in the library and `cli`.

mod cli;

fn main() -> std::process::ExitCode {
    tune_allocator();
    cli::run()
}

/// Chunks and packs are large, short-lived buffers passed between threads. glibc's default
/// raises its mmap threshold after the first such free and then keeps them in per-thread
/// arenas, so peak memory grows with thread count; a fixed threshold returns them at once.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
