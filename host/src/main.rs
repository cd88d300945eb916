//! The `murmur` binary: see `murmur --help`.

fn main() {
    match murmur::cli::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("murmur: error: {e:#}");
            std::process::exit(1);
        }
    }
}
