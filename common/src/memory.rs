//! Process memory settings.

/// Caps glibc's malloc arenas at two, unless `MALLOC_ARENA_MAX` is set.
///
/// glibc gives each thread that allocates concurrently its own arena (up to 8 × cores), and
/// freed memory in one arena is not reused by another, so a multi-threaded runtime that
/// inflates pages and builds request bodies on several workers holds far more resident
/// memory than it uses. Two arenas measured ≈ 20 % less peak RSS at the same CPU
/// (BENCHMARKS.md). Call it first thing in `main`, before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tuning; it is called before any other thread
        // exists, and M_ARENA_MAX with a positive value is a documented, valid setting.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
