//! Size and nesting caps applied to config and rule files before a YAML
//! parser sees them: 100,000 nested `[` kept the parser busy for a minute,
//! and a config is never more than a few kilobytes and a dozen levels deep.

use std::io::Read;
use std::path::Path;

/// A config file is a few KiB; 4 MiB is room for any real one.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Rule files embed long patterns and examples; still far below this.
pub const MAX_RULES_BYTES: u64 = 16 << 20;
/// Real configs and rules nest about six levels; YAML parsers recurse per
/// level, so the cap keeps both time and stack bounded.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "is larger than the {} MiB limit for {what} files; \
         check that it is the right file (a keysentry {what} file is a few KiB)", limit >> 20
    )]
    TooLarge { limit: u64, what: &'static str },
    #[error(
        "line {line}: nested deeper than {limit} levels; \
         flatten the YAML (keysentry {what} files need fewer than ten) or check that it is the right file"
    )]
    TooDeep {
        line: usize,
        limit: usize,
        what: &'static str,
    },
}

/// What a capped read can fail with: the file itself, or a cap.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Limit(LimitError),
}

/// Reads `path` as UTF-8, refusing more than `limit` bytes (without reading
/// them: a multi-GiB file or an endless device costs nothing) and text
/// nested deeper than [`MAX_DEPTH`].
pub fn read_capped(path: &Path, limit: u64, what: &'static str) -> Result<String, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::Limit(LimitError::TooLarge { limit, what }));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8 text",
        ))
    })?;
    check_depth(&text, what).map_err(ReadError::Limit)?;
    Ok(text)
}

/// Refuses YAML nested deeper than [`MAX_DEPTH`], counting flow brackets
/// (`[`, `{`) outside quotes and comments plus block levels (indentation and
/// `- ` items). An over-estimate is harmless at this cap; it only has to be
/// linear and never miss a pathological file.
pub fn check_depth(text: &str, what: &'static str) -> Result<(), LimitError> {
    let mut flow = 0usize;
    // Indentations of the open block levels on the current path.
    let mut block: Vec<usize> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let too_deep = || LimitError::TooDeep {
            line: n + 1,
            limit: MAX_DEPTH,
            what,
        };
        let bytes = line.as_bytes();
        if flow == 0 {
            let indent = bytes.iter().take_while(|b| **b == b' ').count();
            let rest = &bytes[indent..];
            if !rest.is_empty() && rest[0] != b'#' {
                while block.last().is_some_and(|&top| top >= indent) {
                    block.pop();
                }
                block.push(indent);
                // `- - - x` opens one sequence per dash on a single line.
                let mut i = 0;
                while rest.get(i) == Some(&b'-') && rest.get(i + 1) == Some(&b' ') {
                    block.push(indent + i + 2);
                    i += 2;
                    while rest.get(i) == Some(&b' ') {
                        i += 1;
                    }
                }
            }
        }
        let mut quote: Option<u8> = None;
        let mut prev = b' ';
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Some(b'"') if b == b'\\' => i += 1,
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None => match b {
                    b'#' if prev == b' ' || prev == b'\t' => break,
                    b'"' | b'\'' if b" \t[{,:".contains(&prev) => quote = Some(b),
                    b'[' | b'{' => {
                        flow += 1;
                        if flow + block.len() > MAX_DEPTH {
                            return Err(too_deep());
                        }
                    }
                    b']' | b'}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = b;
            i += 1;
        }
        if flow + block.len() > MAX_DEPTH {
            return Err(too_deep());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_pass() {
        check_depth(include_str!("../systemd/keysentry.yaml"), "config").unwrap();
        check_depth(include_str!("../rules/tatum.yaml"), "rules").unwrap();
        check_depth(
            "a: {b: [1, 2, {c: '[[[[', d: \"{{{{\"}]} # [[[[\n",
            "config",
        )
        .unwrap();
    }

    #[test]
    fn deep_flow_and_block_nesting_are_refused() {
        let flow = "[".repeat(100_000);
        assert!(matches!(
            check_depth(&flow, "config"),
            Err(LimitError::TooDeep { line: 1, .. })
        ));
        let dashes = "- ".repeat(100);
        assert!(check_depth(&dashes, "config").is_err());
        let block: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(check_depth(&block, "config").is_err());
        let shallow: String = (0..20).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(check_depth(&shallow, "config").is_ok());
    }
}
