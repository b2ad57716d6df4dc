//! A small per-thread pool of 64 KiB I/O buffers, borrowed only while bytes move: the
//! splice and the client-facing TLS record layer hold no buffer while a session is idle
//! (100,000 idle sessions each keeping 64 KiB would be 6.4 GB).

use std::cell::RefCell;

/// Size of one buffer (64 KiB: a quarter of the syscalls of 16 KiB on bulk transfers;
/// measured in docs/performance.md).
pub const BUF_SIZE: usize = 64 * 1024;
/// Buffers kept per worker thread for reuse (at most 4 MiB per thread).
const POOL_MAX: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of [`BUF_SIZE`] bytes (its `len`), from the pool or new.
pub fn take() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; BUF_SIZE])
}

/// Give a buffer back. Only full-size buffers are kept: one of another length (the initial
/// pipelined bytes arrive in a Vec of their own length) would shrink every later read.
pub fn give(buf: Vec<u8>) {
    if buf.len() != BUF_SIZE {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}
