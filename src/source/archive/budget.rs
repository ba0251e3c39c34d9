//! The budget of one archive on disk, shared by every level of nesting:
//! bytes decompressed and entries seen. Over either, the whole expansion
//! halts (a zip bomb, or a tar of a million empty files).

use super::ArchiveLimits;
use std::cell::Cell;
use std::io::{self, Read};

/// Why the whole expansion stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Halt {
    Size,
    Entries,
}

/// The budget of one archive on disk, shared by every level.
pub(super) struct Ctx {
    pub limits: ArchiveLimits,
    pub bytes_left: Cell<u64>,
    entries_left: Cell<u64>,
    halted: Cell<Option<Halt>>,
}

impl Ctx {
    pub fn new(limits: &ArchiveLimits) -> Self {
        Ctx {
            limits: *limits,
            bytes_left: Cell::new(limits.max_size),
            entries_left: Cell::new(limits.max_entries),
            halted: Cell::new(None),
        }
    }

    pub fn halt(&self, why: Halt) -> Halt {
        self.halted.set(Some(why));
        why
    }

    pub fn check(&self) -> Result<(), Halt> {
        self.halted.get().map_or(Ok(()), Err)
    }

    pub fn entry(&self) -> Result<(), Halt> {
        self.check()?;
        match self.entries_left.get() {
            0 => Err(self.halt(Halt::Entries)),
            n => {
                self.entries_left.set(n - 1);
                Ok(())
            }
        }
    }

    /// Gives back bytes charged for a probe that is read (and charged)
    /// again.
    pub fn refund(&self, n: u64) {
        self.bytes_left.set(self.bytes_left.get().saturating_add(n));
    }

    pub fn charge(&self, n: u64) -> Result<(), Halt> {
        self.check()?;
        let left = self.bytes_left.get();
        if n > left {
            self.bytes_left.set(0);
            return Err(self.halt(Halt::Size));
        }
        self.bytes_left.set(left - n);
        Ok(())
    }
}

/// Reads through `inner`, charging every byte to the budget: the reads of
/// pieces' contents and of nested zips. A read past the budget fails.
pub(super) struct Metered<'a> {
    pub inner: &'a mut dyn Read,
    pub ctx: &'a Ctx,
}

impl Read for Metered<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx
            .charge(n as u64)
            .map_err(|_| io::Error::other("over the archive size limit"))?;
        Ok(n)
    }
}

/// Counts what is read through it, so that the part of a tar entry left
/// unread (tar reads through it to the next header) can be charged.
pub(super) struct Counted<'a> {
    pub inner: &'a mut dyn Read,
    pub read: u64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::{ArchiveLimits, Ctx, Halt, Metered};
    use std::io::Read;

    fn limits(max_size: u64, max_entries: u64) -> ArchiveLimits {
        ArchiveLimits {
            max_size,
            max_entries,
            ..ArchiveLimits::default()
        }
    }

    #[test]
    fn the_size_cap_halts_every_later_read() {
        let ctx = Ctx::new(&limits(10, 100));
        assert_eq!(ctx.charge(6), Ok(()));
        assert_eq!(ctx.charge(4), Ok(()));
        assert_eq!(ctx.charge(1), Err(Halt::Size));
        // Halted for good: a later entry or a small read is refused too.
        assert_eq!(ctx.charge(0), Err(Halt::Size));
        assert_eq!(ctx.entry(), Err(Halt::Size));
    }

    #[test]
    fn the_entry_cap_counts_entries() {
        let ctx = Ctx::new(&limits(1 << 20, 2));
        assert_eq!(ctx.entry(), Ok(()));
        assert_eq!(ctx.entry(), Ok(()));
        assert_eq!(ctx.entry(), Err(Halt::Entries));
        assert_eq!(ctx.check(), Err(Halt::Entries));
    }

    #[test]
    fn a_metered_read_past_the_cap_fails_and_halts() {
        let ctx = Ctx::new(&limits(1000, 10));
        let mut zeros = std::io::repeat(0).take(5000);
        let mut out = Vec::new();
        let read = Metered {
            inner: &mut zeros,
            ctx: &ctx,
        }
        .read_to_end(&mut out);
        assert!(read.is_err());
        assert!(out.len() <= 1000 + 8192, "read {} bytes", out.len());
        assert_eq!(ctx.check(), Err(Halt::Size));
    }

    #[test]
    fn a_refund_gives_back_a_probe() {
        let ctx = Ctx::new(&limits(100, 10));
        assert_eq!(ctx.charge(100), Ok(()));
        ctx.refund(40);
        assert_eq!(ctx.charge(40), Ok(()));
        assert_eq!(ctx.charge(1), Err(Halt::Size));
    }
}
