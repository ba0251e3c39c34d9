//! `keysentry scan -`: standard input, read in pieces that end on a line
//! boundary so memory stays bounded whatever is piped in.

use super::{ScanStats, SourceError};
use crate::scan::{Chunk, Finding, Origin, Scanner};
use std::io::Read;
use std::sync::Arc;

const PIECE: usize = 8 << 20;

pub fn scan_reader(
    mut input: impl Read,
    scanner: &Scanner,
    stats: &ScanStats,
) -> Result<Vec<Finding>, SourceError> {
    let origin = Arc::new(Origin::Stdin);
    let mut findings = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(PIECE);
    let (mut first_line, mut base_offset) = (1u64, 0u64);
    let mut eof = false;
    while !eof {
        let mut piece = vec![0u8; PIECE];
        let n = read_full(&mut input, &mut piece).map_err(|source| SourceError::Io {
            path: "<stdin>".into(),
            source,
        })?;
        eof = n < PIECE;
        buf.extend_from_slice(&piece[..n]);
        let cut = if eof {
            buf.len()
        } else {
            match buf.iter().rposition(|&b| b == b'\n') {
                Some(p) => p + 1,
                None => continue,
            }
        };
        let rest = buf.split_off(cut);
        let data = std::mem::replace(&mut buf, rest);
        stats.add_bytes(data.len());
        let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        let len = data.len() as u64;
        let chunk = Chunk {
            origin: origin.clone(),
            data,
            first_line,
            base_offset,
        };
        findings.extend(scanner.scan(&chunk));
        first_line += lines;
        base_offset += len;
    }
    stats
        .files
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(findings)
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
