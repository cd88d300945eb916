//! The `murmur` binary: see `murmur --help`. Its commands live in `commands/`, one file
//! each; the library (`murmur`) holds the engine.

mod commands;

/// mimalloc serves the run loop's allocations. Its workers allocate and free small records
/// on several threads at once, where glibc's malloc (with its arena growth and page
/// faults) was the largest single cost in the loop's profile.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    match commands::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("murmur: error: {e:#}");
            std::process::exit(1);
        }
    }
}
