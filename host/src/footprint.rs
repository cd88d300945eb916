//! The process's footprint: handing start-up code back once a run is under way.
//!
//! Loading a workflow runs code that the run itself never runs again: the manifest's TOML
//! parser, JSON-schema compilation, the CEL parser of routing rules, the component
//! compiler's set-up, `clap`. Each page of the binary that start-up touches stays mapped
//! into the process — and counts in its resident set — until the kernel needs the memory,
//! and the kernel maps pages in 64 KiB blocks around each one touched: after loading the
//! cascade example, 10.7 MB of the binary's code was resident, of which the run loop
//! uses about half (measured with `/proc/PID/pagemap`, see `docs/performance.md`).
//!
//! [`release_startup_code`] unmaps the binary's read-only, file-backed pages from the
//! process (`madvise(MADV_DONTNEED)`). They stay in the page cache, shared and clean; code
//! the run needs again is mapped back from there on first use (a minor fault, no disk
//! read). Only mappings that hold no private copies are released — the text and the
//! read-only data; never the relocated (RELRO) or writable data, whose pages differ from
//! the file — so the call cannot change what any address reads.

/// What [`release_startup_code`] handed back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings released.
    pub mappings: usize,
    /// Bytes of them that were resident before the call.
    pub resident_bytes: u64,
}

/// Unmap the `murmur` binary's clean read-only pages from this process, so that only
/// the code used from now on becomes resident again. Call it once the workflow is loaded
/// and before the run starts. Does nothing outside Linux.
pub fn release_startup_code() -> std::io::Result<Released> {
    #[cfg(target_os = "linux")]
    {
        linux::release()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(Released::default())
    }
}

/// [`release_startup_code`], a failure logged rather than returned: the run does not
/// depend on it (a sandbox without `/proc`, say).
pub fn after_start_up() {
    match release_startup_code() {
        Ok(r) => tracing::debug!(
            mappings = r.mappings,
            resident_bytes = r.resident_bytes,
            "released start-up code"
        ),
        Err(e) => tracing::warn!("could not release start-up code: {e}"),
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::Released;
    use std::io;

    /// One mapping of `/proc/self/smaps`.
    #[derive(Debug, PartialEq)]
    pub(super) struct Mapping {
        pub start: usize,
        pub end: usize,
        pub writable: bool,
        pub path: String,
        pub rss_kb: u64,
        pub anonymous_kb: u64,
    }

    /// The mappings listed in `smaps` text. A header line is
    /// `start-end perms offset dev inode [path]`; the path may contain spaces.
    pub(super) fn mappings(smaps: &str) -> Vec<Mapping> {
        let mut out: Vec<Mapping> = Vec::new();
        for line in smaps.lines() {
            if let Some(m) = header(line) {
                out.push(m);
                continue;
            }
            let Some(last) = out.last_mut() else { continue };
            let mut fields = line.split_whitespace();
            let (Some(key), Some(kb)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(kb) = kb.parse::<u64>() else { continue };
            match key {
                "Rss:" => last.rss_kb = kb,
                "Anonymous:" => last.anonymous_kb = kb,
                _ => {}
            }
        }
        out
    }

    fn header(line: &str) -> Option<Mapping> {
        let mut fields = line.splitn(6, ' ');
        let range = fields.next()?;
        let perms = fields.next()?;
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        if perms.len() != 4 {
            return None;
        }
        // offset, device, inode, then the path padded with spaces.
        let (_offset, _dev, _inode) = (fields.next()?, fields.next()?, fields.next()?);
        let path = fields.next().unwrap_or("").trim_start().to_string();
        Some(Mapping {
            start,
            end,
            writable: perms.as_bytes()[1] == b'w',
            path,
            rss_kb: 0,
            anonymous_kb: 0,
        })
    }

    /// Whether `m`, a mapping of the executable `exe`, may be released: read-only,
    /// backed by the file, and without one privately written page.
    pub(super) fn releasable(m: &Mapping, exe: &str) -> bool {
        !m.writable && m.anonymous_kb == 0 && m.rss_kb > 0 && m.path == exe
    }

    pub(super) fn release() -> io::Result<Released> {
        let exe = std::fs::read_link("/proc/self/exe")?;
        let exe = exe.to_string_lossy();
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut released = Released::default();
        for m in mappings(&smaps).iter().filter(|m| releasable(m, &exe)) {
            // SAFETY: the range is a whole mapping of this process, read-only and backed
            // by the executable with no private (copied-on-write) page, so dropping its
            // pages only makes the next access map the same file contents again.
            let rc = unsafe {
                libc::madvise(
                    m.start as *mut libc::c_void,
                    m.end - m.start,
                    libc::MADV_DONTNEED,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            released.mappings += 1;
            released.resident_bytes += m.rss_kb * 1024;
        }
        Ok(released)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::{Mapping, mappings, releasable};

    const SMAPS: &str = "\
55d0c0000000-55d0c05c2000 r--p 00000000 fd:01 1234                       /opt/my murmur
Size:               5896 kB
Rss:                2048 kB
Anonymous:             0 kB
55d0c05c2000-55d0c1d1a000 r-xp 005c1000 fd:01 1234                       /opt/my murmur
Rss:               10700 kB
Anonymous:             0 kB
55d0c1d1a000-55d0c1e10000 r--p 01758000 fd:01 1234                       /opt/my murmur
Rss:                 980 kB
Anonymous:           980 kB
55d0c1e10000-55d0c1e1a000 rw-p 0184e000 fd:01 1234                       /opt/my murmur
Rss:                  40 kB
Anonymous:            40 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 99                         /usr/lib/libc.so.6
Rss:                1000 kB
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                 132 kB
Anonymous:           132 kB
";

    #[test]
    fn smaps_headers_keep_paths_with_spaces_and_their_counters() {
        let ms = mappings(SMAPS);
        assert_eq!(ms.len(), 6);
        assert_eq!(
            ms[1],
            Mapping {
                start: 0x55d0c05c2000,
                end: 0x55d0c1d1a000,
                writable: false,
                path: "/opt/my murmur".into(),
                rss_kb: 10700,
                anonymous_kb: 0,
            }
        );
        assert_eq!(ms[5].path, "[stack]");
    }

    #[test]
    fn only_the_executables_clean_read_only_mappings_are_released() {
        let ms = mappings(SMAPS);
        let chosen: Vec<usize> = ms
            .iter()
            .enumerate()
            .filter(|(_, m)| releasable(m, "/opt/my murmur"))
            .map(|(i, _)| i)
            .collect();
        // Not the relocated read-only data (private pages), the writable data, another
        // library or the stack.
        assert_eq!(chosen, vec![0, 1]);
    }

    #[test]
    fn released_code_is_resident_again_only_where_it_runs() {
        let exe_rss = || -> u64 {
            let exe = std::fs::read_link("/proc/self/exe").expect("exe");
            let exe = exe.to_string_lossy().into_owned();
            let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
            mappings(&smaps)
                .iter()
                .filter(|m| m.path == exe && !m.writable && m.anonymous_kb == 0)
                .map(|m| m.rss_kb)
                .sum()
        };
        // Touch some code first, then release it.
        let parsed: serde_json::Value = serde_json::from_str(r#"{"a":[1,2,3]}"#).expect("json");
        let before = exe_rss();
        let released = super::release_startup_code().expect("release");
        assert!(released.mappings >= 1, "{released:?}");
        assert!(released.resident_bytes > 0, "{released:?}");
        let after = exe_rss();
        assert!(
            after < before,
            "resident {before} kB before, {after} kB after"
        );
        // The code still runs: the same parse, mapped back from the page cache.
        let again: serde_json::Value = serde_json::from_str(r#"{"a":[1,2,3]}"#).expect("json");
        assert_eq!(parsed, again);
    }
}
