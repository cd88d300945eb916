//! [`lock`]: take a mutex by spinning briefly before sleeping.
//!
//! The run loop's locks are held for a few microseconds at a time (a completion, a
//! claim, a store lookup), and on a two-core machine the holder is almost always running.
//! Sleeping on the futex when one is busy costs more than the wait: a context switch for
//! the sleeper and a wake-up system call for the holder (together about a tenth of the
//! loop's profile). So a waiter first retries for a bounded time, and only then sleeps.
//! A poisoned lock is taken as is: its holders keep their state consistent (see the
//! callers).

use std::sync::{Mutex, MutexGuard, TryLockError};

/// Retries before sleeping: roughly 10–30 µs of spinning, the length of a long hold.
const SPINS: u32 = 512;

/// Lock `m`, spinning briefly before sleeping.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    for i in 0..SPINS {
        match m.try_lock() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                // Back off a little more each time, so the holder's cache line is not
                // fought over.
                for _ in 0..(1 + i / 64) {
                    std::hint::spin_loop();
                }
            }
        }
    }
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn contended_locking_loses_no_update() {
        let m = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock(&m) += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(*lock(&m), 40_000);
    }

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 1);
    }
}
