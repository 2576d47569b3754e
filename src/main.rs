//! custodian's entry point; everything lives in the library and `cli`.

mod cli;

fn main() -> std::process::ExitCode {
    tune_allocator();
    cli::run()
}

/// Packs (16 MiB) are large, short-lived buffers passed between threads. glibc's default raises
/// its mmap threshold after the first such free and then keeps them in per-thread arenas, so
/// peak memory grew with thread count. A fixed 4 MiB threshold returns packs to the system at
/// once while 1 MiB chunk buffers stay on the reused heap (a 256 KiB threshold cost 25% more
/// time in page faults); fewer arenas bound fragmentation. Measured in docs/DESIGN.md.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
