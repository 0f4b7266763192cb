//! The trace ring: the records the hit path writes (arrive, park, release, action, pass, ...)
//! into memory allocated once, one seqlock per record, overwriting the oldest when full, and
//! read out at `disarm`. Its own file because it is a second protocol beside the parking one in
//! `state.rs`: writers never wait for each other or for the reader; a record torn by a
//! straggler is detected and skipped. Async-signal-safe like the rest of the hit path.

use crate::sync::{AtomicU32, AtomicU64, Ordering::*, fence, now_ns, zeroed};
use crate::trace::EventKind;

/// A point occurrence in one word: the point's index in the high half, the occurrence in the
/// low half.
pub(crate) fn pack(point: usize, occurrence: u32) -> u64 {
    ((point as u64) << 32) | u64::from(occurrence)
}

/// The point and occurrence of a [`pack`]ed word.
pub(crate) fn unpack(v: u64) -> (usize, u32) {
    ((v >> 32) as usize, v as u32)
}

/// What a record can say happened, by code: a record stores `kind as u64 + 1` (0 is no
/// record); `KINDS[code - 1]` gives the kind back. The ring never records a note.
const KINDS: [EventKind; 9] = [
    EventKind::Arrive,
    EventKind::Park,
    EventKind::Release,
    EventKind::Unrealizable,
    EventKind::Action,
    EventKind::ActionFailed,
    EventKind::Pass,
    EventKind::Abandoned,
    EventKind::Stuck,
];

/// One decoded trace record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raw {
    pub time_ns: u64,
    pub tid: u32,
    pub kind: EventKind,
    pub point: usize,
    pub occurrence: u32,
    pub extra: u64,
}

/// The trace ring, one array per field so that it can come from zero-filled memory: record `i`
/// is `seq[i]`, `time_ns[i]`, ... Only the records a run writes are ever faulted in.
pub(crate) struct Ring {
    seq: Box<[AtomicU64]>,
    time_ns: Box<[AtomicU64]>,
    tid: Box<[AtomicU32]>,
    word: Box<[AtomicU64]>,
    extra: Box<[AtomicU64]>,
    /// How many records this run keeps (at most the arrays' length; 0: none).
    cap: AtomicU64,
    /// Records written in this run: the next one's number.
    next: AtomicU64,
}

impl Ring {
    /// A ring of `n` records, all zero (faulted in only where a run writes).
    pub(crate) fn new(n: usize) -> Ring {
        Ring {
            seq: zeroed(n),
            time_ns: zeroed(n),
            tid: zeroed(n),
            word: zeroed(n),
            extra: zeroed(n),
            cap: AtomicU64::new(0),
            next: AtomicU64::new(0),
        }
    }

    /// Empties the ring for a run that keeps the newest `capacity` records. Called by `arm`
    /// before it publishes the armed mode (whose SeqCst store makes these stores visible).
    pub(crate) fn reset(&self, capacity: usize) {
        let cap = capacity.min(self.seq.len());
        // Only the slots the previous run wrote can hold a stale `seq` (slot `n % cap` for
        // `n < next`): clearing just those keeps the untouched part of the ring unfaulted.
        let dirty = self.next.load(Relaxed).min(self.cap.load(Relaxed)) as usize;
        for seq in &self.seq[..dirty] {
            seq.store(0, Relaxed);
        }
        self.cap.store(cap as u64, Relaxed);
        self.next.store(0, Relaxed);
    }

    /// Appends a record (overwriting the oldest when full). A seqlock per record:
    /// `seq` is 0 while the fields are written, `n + 1` after.
    pub(crate) fn record(
        &self,
        kind: EventKind,
        point: usize,
        occurrence: u32,
        tid: u32,
        extra: u64,
    ) {
        let cap = self.cap.load(Relaxed);
        if cap == 0 {
            return;
        }
        let n = self.next.fetch_add(1, Relaxed);
        let i = (n % cap) as usize;
        self.seq[i].store(0, Relaxed);
        fence(Release);
        self.time_ns[i].store(now_ns(), Relaxed);
        self.tid[i].store(tid, Relaxed);
        self.word[i].store(((kind as u64 + 1) << 56) | pack(point, occurrence), Relaxed);
        self.extra[i].store(extra, Relaxed);
        self.seq[i].store(n + 1, Release);
    }

    /// The records of this run still in the ring, oldest first, and how many older ones were
    /// overwritten. A record torn or overwritten by a straggler while it is read is skipped.
    pub(crate) fn read(&self) -> (Vec<Raw>, u64) {
        let cap = self.cap.load(Relaxed);
        let next = self.next.load(Acquire);
        let start = next.saturating_sub(cap);
        let mut records = Vec::new();
        for n in start..next {
            let i = (n % cap) as usize;
            let seq = self.seq[i].load(Acquire);
            let (time_ns, tid, word, extra) = (
                self.time_ns[i].load(Relaxed),
                self.tid[i].load(Relaxed),
                self.word[i].load(Relaxed),
                self.extra[i].load(Relaxed),
            );
            fence(Acquire);
            if seq != n + 1 || self.seq[i].load(Relaxed) != seq {
                continue; // overwritten or torn by a straggler: skip rather than lie
            }
            let Some(&kind) = KINDS.get(((word >> 56) as usize).wrapping_sub(1)) else { continue };
            let (point, occurrence) = unpack(word & ((1 << 56) - 1));
            records.push(Raw { time_ns, tid, kind, point, occurrence, extra });
        }
        (records, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinds_code_gives_it_back() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(*kind as usize, i, "KINDS follows EventKind's order");
        }
    }
}
