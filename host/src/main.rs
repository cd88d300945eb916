//! The `murmur` binary: see `murmur --help`. Its commands live in `commands/`, one file
//! each; the library (`murmur`) holds the engine.

mod commands;

/// mimalloc serves the run loop's allocations. Its workers allocate and free small records
/// on several threads at once, where glibc's malloc (with its arena growth and page
/// faults) was the largest single cost in the loop's profile.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc commits arena memory as it is used (`arena_eager_commit` 0) instead of its
/// default, eagerly where the system overcommits. Measured on the cascade benchmark
/// (`docs/performance.md`): with the default, anonymous memory at N = 100,000 rose from
/// 254 to 277 MB and peak RSS by 13%; at N = 10,000, 29 to 55 MB. The option's number
/// comes from the linked mimalloc's own header (`build.rs`), never from this source.
/// This runs from `.init_array`, before the Rust runtime starts and before the first
/// allocation.
extern "C" fn configure_allocator() {
    const ARENA_EAGER_COMMIT: &str = env!("MURMUR_MI_OPTION_ARENA_EAGER_COMMIT");
    let Ok(option) = ARENA_EAGER_COMMIT.parse::<libmimalloc_sys::mi_option_t>() else {
        return;
    };
    // SAFETY: mi_option_set only stores an option value; it runs once, before any
    // thread exists, with the number build.rs read from the linked mimalloc's header.
    unsafe { libmimalloc_sys::mi_option_set(option, 0) }
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = configure_allocator;

fn main() {
    match commands::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("murmur: error: {e:#}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_allocator_commits_arena_memory_as_it_is_used() {
        let option: libmimalloc_sys::mi_option_t = env!("MURMUR_MI_OPTION_ARENA_EAGER_COMMIT")
            .parse()
            .expect("a number");
        // SAFETY: reading an option value.
        let value = unsafe { libmimalloc_sys::mi_option_get(option) };
        assert_eq!(value, 0, "mimalloc's default is 2");
    }
}
