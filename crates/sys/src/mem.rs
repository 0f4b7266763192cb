//! Zero-filled atomics without touching the memory.
//!
//! Why: the hook controller keeps a trace ring of up to 65,536 records. Building it element by
//! element writes every page, and on this project's VMs an anonymous page fault costs ~2.5 µs:
//! 640 faults, about 1.6 ms, in every process that arms a schedule (and in `supervise` built
//! with hooks, even unarmed). Memory from `alloc_zeroed` of that size comes from fresh `mmap`
//! pages that the kernel zero-fills on first touch, so only the records a run writes are ever
//! faulted in.

use std::sync::atomic::{AtomicU32, AtomicU64};

/// Types whose all-zero bit pattern is a valid value (`0`). Sealed: only the atomics below.
pub trait ZeroIsValid: private::Sealed + Sized {}

mod private {
    pub trait Sealed {}
    impl Sealed for std::sync::atomic::AtomicU32 {}
    impl Sealed for std::sync::atomic::AtomicU64 {}
}

impl ZeroIsValid for AtomicU32 {}
impl ZeroIsValid for AtomicU64 {}

/// `n` atomics, each `0`, from zero-filled memory that is faulted in only where it is used.
pub fn zeroed_slice<T: ZeroIsValid>(n: usize) -> Box<[T]> {
    let uninit = Box::<[T]>::new_zeroed_slice(n);
    // SAFETY: `T` is `AtomicU32` or `AtomicU64` (the trait is sealed), both of which have the
    // same in-memory representation as their integer and for which all-zero bits are the valid
    // value 0; `new_zeroed_slice` returned `n` zero-filled elements.
    unsafe { uninit.assume_init() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn zeroed_atomics_read_zero_and_are_writable() {
        let v: Box<[AtomicU64]> = zeroed_slice(1 << 16);
        assert_eq!(v.len(), 1 << 16);
        assert!(v.iter().step_by(997).all(|a| a.load(Relaxed) == 0));
        v[12345].store(7, Relaxed);
        assert_eq!(v[12345].load(Relaxed), 7);
        let w: Box<[AtomicU32]> = zeroed_slice(0);
        assert!(w.is_empty());
    }
}
