//! The `murmur` binary: see `murmur --help`.

/// mimalloc serves the run loop's allocations. Its workers allocate and free small records
/// on several threads at once, where glibc's malloc (with its arena growth and page
/// faults) was the largest single cost in the loop's profile.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tune mimalloc before its first allocation (this runs from `.init_array`, before the
/// Rust runtime starts): return freed memory after 2 ms (`purge_delay`, default 10) and
/// commit arena memory as it is used rather than eagerly (`arena_eager_commit` 0). With
/// its defaults the cascade benchmark's peak RSS was 119 MB against glibc's 80 MB; with
/// these, 74 MB (session 4). The delay was 0 until a worker's per-call allocation landed
/// in a size class where nothing long-lived kept its page: each call then emptied the
/// page, mimalloc returned it to the kernel at once and the next call faulted a fresh
/// one — 86,600 `madvise` calls and 5.4 GiB purged at N = 100,000, +33% time. 2 ms
/// absorbs that churn whatever the sizes (RSS +0.4 MB at N = 10,000).
extern "C" fn configure_allocator() {
    // SAFETY: mi_option_set only stores an option value; it is called once, before any
    // thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 2);
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
    }
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e`.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// `mi_option_arena_eager_commit` in mimalloc v3's `mi_option_e`.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = configure_allocator;

fn main() {
    match murmur::cli::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("murmur: error: {e:#}");
            std::process::exit(1);
        }
    }
}
