fn main() -> std::process::ExitCode {
    pin_malloc_thresholds();
    flowtop::run()
}

/// glibc's malloc raises its mmap threshold (up to 32 MiB), and its trim
/// threshold to twice that, each time a mapped block is freed. flowtop
/// frees such blocks early (the flow index's arrays as it grows during the
/// first dump), and from then on the blocks it allocates and frees by the
/// hundred (dump batches, per-interval buffers) stay in malloc's arenas,
/// resident after they are freed (15 MB at a million flows, more when
/// entries were bigger). Pinning the threshold at its default keeps big
/// blocks mapped on their own and returned when freed, and arenas trimmed.
fn pin_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; no thread
    // has started yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
