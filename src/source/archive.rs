//! Archives: zip (jar, war, ear, apk, …), tar, gzip (tar.gz, tgz, a lone
//! `.gz`), nested in one another up to a depth. One archive on disk is
//! expanded into pieces (an inner path and its bytes) handed to a callback;
//! nothing is ever written to disk, so a hostile entry name (`../../x`, an
//! absolute path, a link) names a piece and nothing else.
//!
//! The path of a piece is the archive's path, then `!/` and the entry's path
//! at each level: `app.jar!/config/x.yml`, `a.zip!/lib/b.jar!/c.properties`.
//! Image layers are named by their digest instead (see `image.rs`).
//!
//! Archives are found by their first bytes (zip, gzip, tar `ustar`), and by
//! name for a zip with a prefix (a self-running jar) or an old tar without
//! the `ustar` magic. Three caps hold per archive on disk, all levels
//! together: a depth, the bytes decompressed (a zip bomb stops there), and
//! the entry count. Over a cap, or on a truncated or corrupt archive, what
//! was read is still scanned and a `Problem` names the archive and the
//! cause; the scan goes on.

mod budget;

use super::{image, looks_binary, ScanStats, BINARY_PROBE};
use crate::scan::driver::{Emit, Flow};
use crate::scan::{Chunk, Origin};
use budget::{Counted, Ctx, Halt, Metered};
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

pub const DEFAULT_MAX_DEPTH: u32 = 3;
pub const DEFAULT_MAX_SIZE: u64 = 256 << 20;
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Levels of archives expanded: the archive on disk is level 1, an
    /// archive inside it level 2.
    pub max_depth: u32,
    /// Bytes decompressed from one archive on disk, all levels together
    /// (entries skipped as binary count too: they are inflated to be
    /// passed over). Also bounds the memory a nested zip is read into.
    pub max_size: u64,
    /// Entries (files, directories, links) in one archive on disk.
    pub max_entries: u64,
    /// An inner text file larger than this is skipped and counted, as a
    /// file in a directory walk is.
    pub max_file_size: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_size: DEFAULT_MAX_SIZE,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_file_size: 20 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Zip,
    Tar,
    Gzip,
    /// A compression keysentry does not decompress (named): reported, not
    /// skipped silently as binary.
    Unsupported(&'static str),
}

/// Zip-format files recognised by name when their first bytes are not a
/// zip's (a prefix such as a launcher script), if they look binary.
const ZIP_NAMES: &[&str] = &[
    ".zip", ".jar", ".war", ".ear", ".aar", ".apk", ".nupkg", ".whl", ".ipa", ".xpi", ".vsix",
];

/// The kind of archive a file whose path is `name` and whose first bytes
/// are `head` is, if any. `head` should be at least 263 bytes (tar's magic
/// sits at 257) when the file is that long.
pub fn detect(name: &str, head: &[u8]) -> Option<Kind> {
    let magic = |m: &[u8]| head.starts_with(m);
    if magic(b"PK\x03\x04") || magic(b"PK\x05\x06") || magic(b"PK\x07\x08") {
        return Some(Kind::Zip);
    }
    // The deflate method byte too: two bytes alone would take some binary
    // files for gzip and warn about them.
    if magic(b"\x1f\x8b\x08") {
        return Some(Kind::Gzip);
    }
    if head.get(257..262) == Some(b"ustar") {
        return Some(Kind::Tar);
    }
    if magic(b"\x28\xb5\x2f\xfd") {
        return Some(Kind::Unsupported("zstd"));
    }
    if magic(b"\xfd7zXZ\x00") {
        return Some(Kind::Unsupported("xz"));
    }
    if magic(b"BZh") && head.get(4..10) == Some(b"\x31\x41\x59\x26\x53\x59") {
        return Some(Kind::Unsupported("bzip2"));
    }
    // By name only for binary content: a text file is never taken for one.
    if looks_binary(head) {
        let lower = base_name(name).to_ascii_lowercase();
        if ZIP_NAMES.iter().any(|ext| lower.ends_with(ext)) {
            return Some(Kind::Zip);
        }
        if lower.ends_with(".tar") {
            return Some(Kind::Tar);
        }
    }
    None
}

/// What expanding an archive yields, in archive order.
#[derive(Debug)]
pub enum Piece {
    /// A text file inside: scan `data`. `path` is the whole display path.
    Text { path: String, data: Vec<u8> },
    /// A binary file inside that is no archive.
    Binary,
    /// A text file over `max_file_size` (its size), not scanned.
    TooLarge { path: String, size: u64 },
    /// An archive (the one on disk or one inside) was opened.
    Archive,
    /// Something that could not be scanned, as `path: cause`.
    Problem(String),
}

/// Emits every text file inside the archive at `path`, shown as `shown`,
/// as a chunk of its own at `seq` (its own lines and columns); what could
/// not be scanned is recorded in `stats` for the summary. After a
/// [`Flow::Stop`] the rest of the archive is skipped.
pub fn emit_file(
    path: &Path,
    shown: &str,
    limits: &ArchiveLimits,
    seq: u64,
    out: &dyn Emit,
    stats: &ScanStats,
) -> Flow {
    let mut flow = Flow::Continue;
    expand_file(path, shown, limits, &mut |piece| match piece {
        _ if flow == Flow::Stop => {}
        Piece::Text { path, data } => {
            stats.files.fetch_add(1, Relaxed);
            stats.add_bytes(data.len());
            flow = out.chunk(seq, &Chunk::whole(Origin::File { path }, data));
        }
        Piece::Binary => {
            stats.skipped_binary.fetch_add(1, Relaxed);
        }
        Piece::TooLarge { path, size } => stats.record_too_large(path, size),
        Piece::Archive => {
            stats.archives.fetch_add(1, Relaxed);
        }
        Piece::Problem(what) => stats.record_unreadable(what),
    });
    flow
}

/// Expands the archive at `path` (shown as `shown`) into `on`. A file that
/// is no archive yields nothing.
pub fn expand_file(path: &Path, shown: &str, limits: &ArchiveLimits, on: &mut dyn FnMut(Piece)) {
    let ctx = Ctx::new(limits);
    let shown = image::layer_path(shown).unwrap_or_else(|| shown.to_string());
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return on(Piece::Problem(format!("{shown}: {e}"))),
    };
    let mut head = Vec::with_capacity(BINARY_PROBE);
    if let Err(e) = (&mut file).take(BINARY_PROBE as u64).read_to_end(&mut head) {
        return on(Piece::Problem(format!("{shown}: {e}")));
    }
    let Some(kind) = detect(&shown, &head) else {
        return;
    };
    let result = match kind {
        // A zip on disk is read in place (its directory is at the end).
        Kind::Zip => match file.seek(SeekFrom::Start(0)) {
            Ok(_) => zip_entries(BufReader::new(file), &shown, 1, &ctx, on),
            Err(e) => {
                on(Piece::Problem(format!("{shown}: {e}")));
                Ok(())
            }
        },
        _ => {
            let mut whole = Cursor::new(head).chain(BufReader::new(file));
            expand_stream(&mut whole, &shown, kind, 1, &ctx, on)
        }
    };
    if let Err(halt) = result {
        on(Piece::Problem(format!("{shown}: {}", halted(halt, limits))));
    }
}

fn halted(halt: Halt, limits: &ArchiveLimits) -> String {
    match halt {
        Halt::Size => format!(
            "stopped at the {} MiB limit on bytes decompressed from one archive \
             (a zip bomb, or a large archive: raise --max-archive-size or \
             scan.archives.max_size); the rest of it was not scanned",
            limits.max_size >> 20
        ),
        Halt::Entries => format!(
            "stopped at the limit of {} entries in one archive (raise \
             scan.archives.max_entries); the rest of it was not scanned",
            limits.max_entries
        ),
    }
}

/// Expands an archive of `kind` read from `r`, `name` its display path,
/// `depth` its level.
fn expand_stream(
    r: &mut dyn Read,
    name: &str,
    kind: Kind,
    depth: u32,
    ctx: &Ctx,
    on: &mut dyn FnMut(Piece),
) -> Result<(), Halt> {
    match kind {
        Kind::Tar => tar_entries(r, name, depth, ctx, on),
        Kind::Gzip => gzip(r, name, depth, ctx, on),
        Kind::Zip => {
            // A zip's directory is at its end: read it whole, within the
            // budget (which bounds the memory it takes).
            let mut data = Vec::new();
            // One byte past what is left, so that a zip over it halts.
            let left = ctx.bytes_left.get().saturating_add(1);
            let read = Metered { inner: r, ctx }.take(left).read_to_end(&mut data);
            if let Err(e) = read {
                ctx.check()?;
                on(Piece::Problem(format!("{name}: {}", cause(&e))));
            }
            zip_entries(Cursor::new(data), name, depth, ctx, on)
        }
        Kind::Unsupported(what) => {
            on(Piece::Problem(format!(
                "{name}: compressed with {what}, which keysentry does not decompress; \
                 decompress it and scan the result"
            )));
            Ok(())
        }
    }
}

/// A gzip stream: a tar inside is expanded at the same level (`a.tgz!/x`);
/// anything else is one file named for the archive without `.gz`.
fn gzip(
    r: &mut dyn Read,
    name: &str,
    depth: u32,
    ctx: &Ctx,
    on: &mut dyn FnMut(Piece),
) -> Result<(), Halt> {
    on(Piece::Archive);
    let mut gz = flate2::read::MultiGzDecoder::new(r);
    let mut head = Vec::with_capacity(BINARY_PROBE);
    let read = Metered {
        inner: &mut gz,
        ctx,
    }
    .take(BINARY_PROBE as u64)
    .read_to_end(&mut head);
    if let Err(e) = read {
        ctx.check()?;
        on(Piece::Problem(format!("{name}: {}", cause(&e))));
        if head.is_empty() {
            return Ok(());
        }
    }
    let mut whole = Cursor::new(&head[..]).chain(&mut gz);
    if head.get(257..262) == Some(b"ustar") {
        // What the tar reads of the header probe was charged already.
        ctx.refund(head.len() as u64);
        return tar_entries(&mut whole, name, depth, ctx, on);
    }
    let base = base_name(name);
    let inner = [".gz", ".gzip", ".z"]
        .iter()
        .find_map(|ext| {
            let cut = base.len().checked_sub(ext.len())?;
            (cut > 0 && base[cut..].eq_ignore_ascii_case(ext)).then(|| &base[..cut])
        })
        .unwrap_or(base);
    ctx.refund(head.len() as u64);
    piece(
        &mut whole,
        &format!("{name}!/{inner}"),
        None,
        depth,
        ctx,
        on,
    )
    .map(|_| ())
}

fn tar_entries(
    r: &mut dyn Read,
    name: &str,
    depth: u32,
    ctx: &Ctx,
    on: &mut dyn FnMut(Piece),
) -> Result<(), Halt> {
    on(Piece::Archive);
    let mut tar = tar::Archive::new(r);
    let entries = match tar.entries() {
        Ok(e) => e,
        Err(e) => {
            on(Piece::Problem(format!("{name}: {}", cause(&e))));
            return Ok(());
        }
    };
    for entry in entries {
        ctx.check()?;
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // A bad header leaves no way to the next one.
                on(Piece::Problem(format!("{name}: {}", cause(&e))));
                return Ok(());
            }
        };
        ctx.entry()?;
        let size = entry.size();
        let kind = entry.header().entry_type();
        // Links, directories, devices: never followed, nothing to read.
        // What a sparse file holds is not where its header says.
        if !(kind.is_file() || kind.is_contiguous()) {
            ctx.charge(size)?;
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let path = inner_path(name, &raw);
        let mut counted = Counted {
            inner: &mut entry,
            read: 0,
        };
        if !piece(&mut counted, &path, Some(size), depth, ctx, on)? {
            // The stream under the tar is broken: the next header is lost.
            return Ok(());
        }
        // tar reads through the rest to reach the next header.
        ctx.charge(size.saturating_sub(counted.read))?;
    }
    Ok(())
}

fn zip_entries<R: Read + Seek>(
    mut r: R,
    name: &str,
    depth: u32,
    ctx: &Ctx,
    on: &mut dyn FnMut(Piece),
) -> Result<(), Halt> {
    on(Piece::Archive);
    let mut zip = match zip::ZipArchive::new(&mut r) {
        Ok(z) => z,
        Err(e) => {
            on(Piece::Problem(format!(
                "{name}: not a readable zip archive ({}); its entries were read from \
                 their local headers",
                zip_cause(&e)
            )));
            // A truncated zip has lost its directory, not its entries.
            return match r.seek(SeekFrom::Start(0)) {
                Ok(_) => zip_stream(&mut r, name, depth, ctx, on),
                Err(_) => Ok(()),
            };
        }
    };
    for i in 0..zip.len() {
        ctx.entry()?;
        let entry = zip
            .name_for_index(i)
            .map(|n| inner_path(name, n.as_bytes()))
            .unwrap_or_else(|| format!("{name}!/(entry {i})"));
        let mut file = match zip.by_index(i) {
            Ok(f) => f,
            Err(e) => {
                on(Piece::Problem(format!("{entry}: {}", zip_cause(&e))));
                continue;
            }
        };
        // A zip symlink's data is its target's name: not followed.
        if file.is_dir() || file.is_symlink() || !file.is_file() {
            continue;
        }
        let size = file.size();
        piece(&mut file, &entry, Some(size), depth, ctx, on)?;
    }
    Ok(())
}

/// The entries of a zip without its central directory, one local header
/// after the other, until one cannot be read.
fn zip_stream(
    r: &mut dyn Read,
    name: &str,
    depth: u32,
    ctx: &Ctx,
    on: &mut dyn FnMut(Piece),
) -> Result<(), Halt> {
    let mut r = r;
    loop {
        ctx.check()?;
        let mut file = match zip::read::read_zipfile_from_stream(&mut r) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => {
                on(Piece::Problem(format!(
                    "{name}: entries after this point could not be read ({})",
                    zip_cause(&e)
                )));
                return Ok(());
            }
        };
        ctx.entry()?;
        if file.is_dir() || !file.is_file() {
            continue;
        }
        let path = inner_path(name, file.name_raw());
        let size = file.size();
        if !piece(&mut file, &path, Some(size), depth, ctx, on)? {
            return Ok(());
        }
    }
}

/// One entry: a nested archive is expanded a level down, a text file is
/// handed to `on`, a binary one counted. `declared` is the size its header
/// gives. False when the entry could not be read to its end (the stream
/// under it may be broken).
fn piece(
    r: &mut dyn Read,
    path: &str,
    declared: Option<u64>,
    depth: u32,
    ctx: &Ctx,
    on: &mut dyn FnMut(Piece),
) -> Result<bool, Halt> {
    let mut data = Vec::with_capacity(BINARY_PROBE.min(declared.unwrap_or(0) as usize));
    let read = Metered { inner: r, ctx }
        .take(BINARY_PROBE as u64)
        .read_to_end(&mut data);
    let mut failed = read.err();
    if failed.is_some() {
        ctx.check()?;
    } else {
        match detect(path, &data) {
            Some(_) if depth >= ctx.limits.max_depth => {
                on(Piece::Problem(format!(
                    "{path}: not expanded: an archive nested deeper than the limit of {} \
                     level(s) (raise --max-archive-depth or scan.archives.max_depth)",
                    ctx.limits.max_depth
                )));
                return Ok(true);
            }
            Some(kind) => {
                // The probe is read (and charged) again by the nested archive.
                ctx.refund(data.len() as u64);
                let name = image::layer_path(path).unwrap_or_else(|| path.to_string());
                let mut whole = Cursor::new(data).chain(r);
                expand_stream(&mut whole, &name, kind, depth + 1, ctx, on)?;
                return Ok(true);
            }
            None if looks_binary(&data) => {
                on(Piece::Binary);
                return Ok(true);
            }
            None => {}
        }
        let limit = ctx.limits.max_file_size;
        let want = limit.saturating_add(1).saturating_sub(data.len() as u64);
        if let Err(e) = (Metered { inner: r, ctx })
            .take(want)
            .read_to_end(&mut data)
        {
            ctx.check()?;
            failed = Some(e);
        }
        if data.len() as u64 > limit {
            let size = declared.unwrap_or(0).max(data.len() as u64);
            on(Piece::TooLarge {
                path: path.to_string(),
                size,
            });
            return Ok(failed.is_none());
        }
    }
    // A corrupt entry (bad CRC, data cut short) still holds what was read:
    // a key in it is leaked all the same.
    let ok = failed.is_none();
    if let Some(e) = failed {
        on(Piece::Problem(format!("{path}: {}", cause(&e))));
        if looks_binary(&data) {
            return Ok(false);
        }
    }
    on(Piece::Text {
        path: path.to_string(),
        data,
    });
    Ok(ok)
}

/// `archive!/entry`, the entry's name with control characters escaped and a
/// leading `./` or `/` dropped (never used as a path on disk).
fn inner_path(archive: &str, raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut clean: String = text
        .chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect();
    while let Some(rest) = clean.strip_prefix("./").or_else(|| clean.strip_prefix('/')) {
        clean = rest.to_string();
    }
    format!("{archive}!/{clean}")
}

/// The last component of a display path.
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '!']).next().unwrap_or(path)
}

fn cause(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return "truncated: the data ends early".into();
    }
    let text = e.to_string();
    if text.contains("checksum") || text.contains("CRC") {
        return format!("bad checksum, the data is corrupt ({text}); what was read is scanned");
    }
    if text.contains("deflate") || text.contains("gzip") {
        return format!("corrupt compressed data ({text})");
    }
    text
}

fn zip_cause(e: &zip::result::ZipError) -> String {
    match e {
        zip::result::ZipError::Io(io) => cause(io),
        zip::result::ZipError::UnsupportedArchive(what) => {
            format!("not scanned: {what} (encrypted, or a compression other than deflate)")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{base_name, detect, inner_path, Kind};

    fn tar_head() -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..5].copy_from_slice(b"a.txt");
        h[257..263].copy_from_slice(b"ustar\0");
        h
    }

    #[test]
    fn archives_are_known_by_their_first_bytes() {
        assert_eq!(detect("x.dat", b"PK\x03\x04\x14\0"), Some(Kind::Zip));
        assert_eq!(detect("x.dat", b"\x1f\x8b\x08\0\0\0"), Some(Kind::Gzip));
        assert_eq!(detect("x.dat", &tar_head()), Some(Kind::Tar));
        assert_eq!(
            detect("x.dat", b"\x28\xb5\x2f\xfd\0"),
            Some(Kind::Unsupported("zstd"))
        );
        // Text named like an archive is text; two gzip bytes alone are not gzip.
        assert_eq!(detect("notes.zip", b"just text\n"), None);
        assert_eq!(detect("x.bin", b"\x1f\x8b\x00\0"), None);
        // A binary .jar with a launcher prefix is tried as a zip.
        assert_eq!(detect("run.JAR", b"#!/bin/sh\n\0PK"), Some(Kind::Zip));
        assert_eq!(detect("a.zip!/old.tar", b"name\0\0\0"), Some(Kind::Tar));
    }

    #[test]
    fn inner_names_are_shown_escaped_and_never_as_real_paths() {
        assert_eq!(inner_path("a.tar", b"./etc/x.yml"), "a.tar!/etc/x.yml");
        assert_eq!(inner_path("a.tar", b"//abs.env"), "a.tar!/abs.env");
        assert_eq!(inner_path("a.tar", b"../../x"), "a.tar!/../../x");
        assert_eq!(
            inner_path("a.tar", b"a\x1b[2J.env"),
            "a.tar!/a\\u{1b}[2J.env"
        );
        assert_eq!(
            inner_path("a.tar", b"bad\xffname"),
            "a.tar!/bad\u{fffd}name"
        );
        assert_eq!(base_name("a.zip!/lib/b.jar"), "b.jar");
        assert_eq!(base_name("app.log.gz"), "app.log.gz");
    }
}
