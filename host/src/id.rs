//! Fresh UUIDv7 ids, made without a system call.
//!
//! A run makes an id for every artifact and invocation — two or three per invocation.
//! `uuid::Uuid::now_v7()` asks the kernel for its random bits each time (a `getrandom`
//! call); here each thread seeds a small generator once. Within one millisecond a thread's ids count up in the 12-bit
//! `rand_a` field (borrowing the next millisecond after 4,096), so they still sort in the
//! order that thread made them.

use std::cell::Cell;

/// Per-thread generator state: splitmix64 state, last millisecond, counter within it.
#[derive(Clone, Copy)]
struct State {
    rng: u64,
    ms: u64,
    counter: u16,
}

thread_local! {
    static STATE: Cell<Option<State>> = const { Cell::new(None) };
}

/// splitmix64: a fast, well-mixed 64-bit generator (ids need uniqueness, not secrecy).
fn next(rng: &mut u64) -> u64 {
    *rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *rng;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A new UUIDv7.
pub fn uuid_v7() -> uuid::Uuid {
    let ms = crate::artifact::now_ms();
    let mut s = STATE.with(|c| c.get()).unwrap_or_else(|| State {
        // Seeded once per thread from the operating system.
        rng: uuid::Uuid::now_v7().as_u64_pair().1,
        ms: 0,
        counter: 0,
    });
    let r = next(&mut s.rng);
    if ms <= s.ms && s.counter < 0x0FFF {
        // The same millisecond (or the clock stepped back): count up.
        s.counter += 1;
    } else {
        // A new millisecond; or 4,096 ids in this one, so borrow the next.
        s.ms = ms.max(s.ms + 1);
        // Start low in the 12 bits, leaving room to count up within the millisecond.
        s.counter = (r >> 54) as u16;
    }
    let tail = next(&mut s.rng);
    STATE.with(|c| c.set(Some(s)));
    let mut random = [0u8; 10];
    random[..2].copy_from_slice(&s.counter.to_be_bytes());
    random[2..].copy_from_slice(&tail.to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(s.ms, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_version_7_unique_and_ordered_within_a_thread() {
        let ids: Vec<String> = (0..20_000).map(|_| uuid_v7().to_string()).collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "a thread's ids sort in the order it made them");
        let parsed = uuid::Uuid::parse_str(&ids[0]).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        let ms = parsed
            .get_timestamp()
            .expect("v7 has a timestamp")
            .to_unix();
        let now = crate::artifact::now_ms() / 1000;
        assert!(ms.0.abs_diff(now) <= 1, "the timestamp is now");
    }

    #[test]
    fn threads_make_different_ids() {
        let a: HashSet<uuid::Uuid> = std::thread::spawn(|| (0..1000).map(|_| uuid_v7()).collect())
            .join()
            .expect("thread");
        let b: HashSet<uuid::Uuid> = (0..1000).map(|_| uuid_v7()).collect();
        assert!(a.is_disjoint(&b));
    }
}
