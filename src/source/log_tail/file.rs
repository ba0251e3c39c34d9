//! One log file as the tailer sees it: opened safely, recognised by its
//! identity and first bytes, read at an offset.

use super::MAX_PIECE;
use crate::scan::hex;
use crate::store::{FileId, LogOffset};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A piece of an over-long line is cut at the last separator in its final
/// bytes, so a key (no separators inside) is never split between pieces.
const CUT_WINDOW: usize = 4096;

pub(super) fn file_id(meta: &std::fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

/// Opens a log without following a symlink and without blocking: a plain
/// `open` of a FIFO swapped in for a log waits for a writer, forever. What
/// was opened is then checked by `fstat`, never by the path again.
pub(super) fn open_log(path: &Path) -> std::io::Result<(File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// What a non-regular file is, for the warning.
pub(super) fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_fifo() {
        "named pipe (FIFO)"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

pub(super) fn lane_of(path: &Path) -> Arc<str> {
    Arc::from(path.to_string_lossy().as_ref())
}

pub(super) fn head_hash(file: &File, len: u64) -> std::io::Result<String> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(hex(&Sha256::digest(&buf)))
}

/// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
pub(super) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub(super) fn count_newlines(file: &File, upto: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; MAX_PIECE];
    let (mut at, mut lines) = (0u64, 0u64);
    while at < upto {
        let want = ((upto - at) as usize).min(buf.len());
        let n = read_full_at(file, &mut buf[..want], at)?;
        if n == 0 {
            break;
        }
        lines += crate::source::count_lines(&buf[..n]);
        at += n as u64;
    }
    Ok(lines)
}

/// Where to cut a piece of a line longer than [`MAX_PIECE`].
pub(super) fn piece_cut(buf: &[u8]) -> usize {
    let from = buf.len().saturating_sub(CUT_WINDOW);
    buf[from..]
        .iter()
        .rposition(|b| b" \t\r,;\"'<>()[]{}|".contains(b))
        .map(|p| from + p + 1)
        .unwrap_or(buf.len())
}

/// Whether `file` is still the one a stored offset describes.
pub(super) fn still_same(file: &File, size: u64, s: &LogOffset) -> bool {
    size >= s.offset
        && (s.head_len == 0
            || (size >= s.head_len && head_hash(file, s.head_len).is_ok_and(|h| h == s.head_hash)))
}

/// A file with identity `id` in the directory of `was`, e.g. `app.log.1`
/// after logrotate renamed `app.log`.
pub(super) fn find_by_id(was: &Path, id: FileId) -> Option<(PathBuf, File)> {
    let dir = was.parent()?;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file() && file_id(&meta) == id {
            // Checked again on what was opened: the path may have changed.
            let (file, opened) = open_log(&path).ok()?;
            return (opened.is_file() && file_id(&opened) == id).then_some((path, file));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_cut_at_a_separator() {
        let mut buf = vec![b'a'; 10_000];
        buf[9_000] = b' ';
        assert_eq!(piece_cut(&buf), 9_001);
        let solid = vec![b'a'; 10_000];
        assert_eq!(piece_cut(&solid), 10_000);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // mkfifo, not git
    fn a_fifo_opens_at_once_and_a_symlink_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("a.log");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // No writer: a blocking open would never return.
        let (_, meta) = open_log(&fifo).unwrap();
        assert_eq!(kind(&meta), "named pipe (FIFO)");
        let real = dir.path().join("real.log");
        std::fs::write(&real, "x\n").unwrap();
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open_log(&link).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(open_log(&real).unwrap().1.is_file());
    }
}
