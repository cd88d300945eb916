//! A size-class allocator for small blocks, in front of the standard one.
//!
//! Every call into a plugin moves dozens of strings across the boundary: the host asks the
//! guest to allocate each input and context string (`cabi_realloc`), the bindings free them
//! when the call returns, and the plugin's own JSON work allocates and frees more. With the
//! standard allocator (dlmalloc) that churn was a tenth of a whole run's time, in searching
//! bins and splitting and merging chunks. Small blocks here come from nine size classes
//! (16 bytes to 4 KiB) with a free list each: allocating pops a block (or carves one from
//! a 64 KiB slab), freeing pushes it back, a few instructions each, and a block freed in
//! one call serves the next call's strings of the same size. Larger or over-aligned blocks
//! go to the standard allocator as before.
//!
//! Blocks are never returned from a class to the standard allocator, so a plugin's memory
//! holds its largest simultaneous small-block use — bounded by the same memory cap as
//! everything else. WebAssembly guests here are single-threaded.
//!
//! Enabled by the `fast-alloc` feature (on by default); a plugin with its own
//! `#[global_allocator]` turns the default features off.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;
use std::alloc::System;

/// Block sizes; every class is a multiple of 16, so every block is 16-byte aligned.
const CLASSES: [usize; 9] = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
/// The largest block served from a class.
const LARGEST: usize = 4096;
/// Bytes taken from the standard allocator at a time to carve blocks from.
const SLAB: usize = 64 << 10;
/// Alignment of slabs (and so of every block).
const ALIGN: usize = 16;

/// Free lists and the current slab.
struct State {
    /// Head of each class's free list; a free block's first word points to the next.
    free: [*mut u8; CLASSES.len()],
    /// Unused bytes at the end of the current slab.
    bump: *mut u8,
    end: *mut u8,
}

/// The allocator: small blocks by size class, the rest from [`System`].
pub struct SizeClasses {
    state: UnsafeCell<State>,
}

// SAFETY: WebAssembly guests built from this SDK are single-threaded; the state is never
// touched from two threads.
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    /// An empty allocator.
    pub const fn new() -> Self {
        Self {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES.len()],
                bump: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

/// The class serving `layout`, if a class does.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > LARGEST || layout.align() > ALIGN {
        return None;
    }
    let size = layout.size().max(1);
    CLASSES.iter().position(|&c| c >= size)
}

unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see the `Sync` impl); no reference to the state
        // outlives this call.
        let s = unsafe { &mut *self.state.get() };
        let head = s.free[class];
        if !head.is_null() {
            // SAFETY: a free block holds the next free block's address in its first word,
            // written by `dealloc` (blocks are 16-byte aligned and at least 16 bytes).
            s.free[class] = unsafe { *(head as *mut *mut u8) };
            return head;
        }
        let size = CLASSES[class];
        if (s.end as usize) - (s.bump as usize) < size {
            // SAFETY: a valid, non-zero layout.
            let slab = unsafe { System.alloc(Layout::from_size_align_unchecked(SLAB, ALIGN)) };
            if slab.is_null() {
                return ptr::null_mut();
            }
            // What is left of the old slab is given to the free lists, largest first.
            let mut rest = (s.end as usize) - (s.bump as usize);
            for (c, &block) in CLASSES.iter().enumerate().rev() {
                while rest >= block {
                    // SAFETY: the block lies within the old slab's unused tail.
                    unsafe { *(s.bump as *mut *mut u8) = s.free[c] };
                    s.free[c] = s.bump;
                    s.bump = s.bump.wrapping_add(block);
                    rest -= block;
                }
            }
            s.bump = slab;
            s.end = slab.wrapping_add(SLAB);
        }
        let block = s.bump;
        s.bump = s.bump.wrapping_add(size);
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: allocated by `System` with this layout (see `alloc`).
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: single-threaded; `block` came from this class (same layout).
        let s = unsafe { &mut *self.state.get() };
        unsafe { *(block as *mut *mut u8) = s.free[class] };
        s.free[class] = block;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `layout.align()` is a valid alignment and the caller guarantees
        // `new_size` does not overflow when rounded to it.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new)) {
            // Still fits its block.
            (Some(a), Some(b)) if a == b => block,
            // Both large: the standard allocator may grow in place.
            // SAFETY: allocated by `System` with `layout`.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: `new` is valid; the copy covers the smaller of the two sizes.
                let moved = unsafe { self.alloc(new) };
                if !moved.is_null() {
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}
