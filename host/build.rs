//! Find the number of mimalloc's `mi_option_arena_eager_commit` in the header of the
//! mimalloc this build compiles (libmimalloc-sys hands its include directory to direct
//! dependents as `DEP_MIMALLOC_INCLUDE_DIR`), so `main.rs` sets that option by name, in
//! effect: the `mi_option_e` numbers move between mimalloc versions (libmimalloc-sys's own
//! constants are a version behind), and a number written in the source would silently
//! name another option after a dependency bump. An option that is gone fails the build.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MIMALLOC_INCLUDE_DIR");
    let Ok(dir) = std::env::var("DEP_MIMALLOC_INCLUDE_DIR") else {
        panic!("libmimalloc-sys did not name its include directory (DEP_MIMALLOC_INCLUDE_DIR)");
    };
    let header = Path::new(&dir).join("mimalloc.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text =
        std::fs::read_to_string(&header).unwrap_or_else(|e| panic!("{}: {e}", header.display()));
    let name = "mi_option_arena_eager_commit";
    match option_number(&text, name) {
        Ok(n) => println!("cargo:rustc-env=MURMUR_MI_OPTION_ARENA_EAGER_COMMIT={n}"),
        Err(e) => panic!("{}: {e}", header.display()),
    }
}

/// The value of `name` in `enum mi_option_e`: its position among the entries before
/// `_mi_option_last`, none of which may set a value of its own.
fn option_number(header: &str, name: &str) -> Result<u32, String> {
    let start = header
        .find("typedef enum mi_option_e")
        .ok_or("no `typedef enum mi_option_e`")?;
    let body = &header[start..];
    let open = body.find('{').ok_or("`mi_option_e` has no body")?;
    let end = body
        .find("_mi_option_last")
        .ok_or("`mi_option_e` has no `_mi_option_last`")?;
    let mut n = 0;
    for line in body[open + 1..end].lines() {
        let code = line.split("//").next().unwrap_or_default();
        for entry in code.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.contains('=') {
                return Err(format!(
                    "`{entry}` sets its own value; cannot count the options"
                ));
            }
            if entry == name {
                return Ok(n);
            }
            n += 1;
        }
    }
    Err(format!("no option `{name}`"))
}
