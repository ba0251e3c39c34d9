//! TCP syslog framing (RFC 6587), told apart per frame: a frame that starts
//! with a non-zero digit and a space-terminated count is octet-counted
//! (`LEN SP MSG`, rsyslog's and syslog-ng's default for RFC 5424), anything
//! else runs to the next LF (non-transparent framing, `logger --tcp`'s
//! default). Sans-I/O: bytes in, frames out, so a frame split across reads
//! is just two calls.
//!
//! Memory is capped at `max` bytes per connection: a frame longer than that
//! (a huge line, an octet count that lies upwards) is handed on in pieces
//! of at most `max` bytes, cut after a separator where one is near so a key
//! is not split, and counted as oversized. Nothing is dropped. A count that
//! lies so the stream ends inside the frame: what arrived is handed on at
//! [`Framer::finish`], marked incomplete.

/// Digits of an octet count at most (a count of 10^9 bytes is no syslog).
const MAX_COUNT_DIGITS: usize = 9;
/// How far back from the cap a piece looks for a separator to cut after.
const CUT_WINDOW: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub data: Vec<u8>,
    /// A piece of a frame longer than the cap.
    pub oversized: bool,
    /// A later piece of such a frame (its header was in the first piece).
    pub continued: bool,
    /// The stream ended inside the frame (an octet count larger than what
    /// followed, or a last line without LF is not this: see `finish`).
    pub incomplete: bool,
}

#[derive(Debug)]
enum State {
    /// Between frames.
    Start,
    /// Reading what may be an octet count; the digits so far.
    Count(Vec<u8>),
    /// In an octet-counted frame: bytes still to come.
    Octets(usize),
    /// In a newline-terminated frame.
    Line,
}

#[derive(Debug)]
pub struct Framer {
    max: usize,
    state: State,
    buf: Vec<u8>,
    /// The current frame was cut at least once.
    cut: bool,
    /// Newline framing only (HTTP bodies: a line may start with a number).
    lines_only: bool,
}

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer {
            max: max.max(CUT_WINDOW * 2),
            state: State::Start,
            buf: Vec::new(),
            cut: false,
            lines_only: false,
        }
    }

    /// Lines only, no octet counting: for text that is not a syslog stream.
    pub fn lines(max: usize) -> Framer {
        Framer {
            lines_only: true,
            ..Framer::new(max)
        }
    }

    /// Frames completed by `data` (and pieces of oversized ones).
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        while !data.is_empty() {
            match &mut self.state {
                State::Start => {
                    let b = data[0];
                    if matches!(b, b'\n' | b'\r' | b' ' | b'\t' | 0) {
                        data = &data[1..];
                    } else if (b'1'..=b'9').contains(&b) && !self.lines_only {
                        self.state = State::Count(vec![b]);
                        data = &data[1..];
                    } else {
                        self.state = State::Line;
                    }
                }
                State::Count(digits) => {
                    let b = data[0];
                    if b.is_ascii_digit() && digits.len() < MAX_COUNT_DIGITS {
                        digits.push(b);
                        data = &data[1..];
                    } else if b == b' ' {
                        // Only ASCII digits were pushed, and at most 9.
                        let n = std::str::from_utf8(digits)
                            .ok()
                            .and_then(|s| s.parse::<usize>().ok())
                            .unwrap_or(0);
                        self.state = State::Octets(n);
                        data = &data[1..];
                        if n == 0 {
                            self.state = State::Start;
                        }
                    } else {
                        // Not a count after all: the digits start a line.
                        self.buf = std::mem::take(digits);
                        self.state = State::Line;
                    }
                }
                State::Octets(left) => {
                    let room = self.max - self.buf.len();
                    let take = (*left).min(data.len()).min(room);
                    self.buf.extend_from_slice(&data[..take]);
                    *left -= take;
                    data = &data[take..];
                    if *left == 0 {
                        self.state = State::Start;
                        out.push(self.frame(false));
                    } else if self.buf.len() >= self.max {
                        out.push(self.piece());
                    }
                }
                State::Line => {
                    let room = self.max - self.buf.len();
                    let window = &data[..data.len().min(room)];
                    match memchr::memchr(b'\n', window) {
                        Some(i) => {
                            self.buf.extend_from_slice(&window[..i]);
                            if self.buf.last() == Some(&b'\r') {
                                self.buf.pop();
                            }
                            data = &data[i + 1..];
                            self.state = State::Start;
                            out.push(self.frame(false));
                        }
                        None => {
                            self.buf.extend_from_slice(window);
                            data = &data[window.len()..];
                            if self.buf.len() >= self.max {
                                out.push(self.piece());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// The end of the stream: a partial frame is handed on (a last line
    /// without LF as usual; an octet-counted frame cut short as
    /// `incomplete`), so no byte that arrived goes unscanned.
    pub fn finish(&mut self) -> Option<Frame> {
        let incomplete = matches!(self.state, State::Octets(_));
        if let State::Count(digits) = &mut self.state {
            self.buf = std::mem::take(digits);
        }
        self.state = State::Start;
        (!self.buf.is_empty()).then(|| self.frame(incomplete))
    }

    /// Bytes held for the frame in progress (at most the cap).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    fn frame(&mut self, incomplete: bool) -> Frame {
        let oversized = std::mem::take(&mut self.cut);
        Frame {
            data: std::mem::take(&mut self.buf),
            oversized,
            continued: oversized,
            incomplete,
        }
    }

    /// The buffer is full mid-frame: hand on up to the last separator near
    /// its end, keep the rest for the next piece.
    fn piece(&mut self) -> Frame {
        let from = self.buf.len().saturating_sub(CUT_WINDOW);
        let cut = self.buf[from..]
            .iter()
            .rposition(|b| b" \t,;\"'<>()[]{}|=&".contains(b))
            .map_or(self.buf.len(), |p| from + p + 1);
        let rest = self.buf.split_off(cut);
        let continued = std::mem::replace(&mut self.cut, true);
        let data = std::mem::replace(&mut self.buf, rest);
        Frame {
            data,
            oversized: true,
            continued,
            incomplete: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| String::from_utf8_lossy(&f.data).into_owned())
            .collect()
    }

    #[test]
    fn octet_counted_and_newline_frames_are_told_apart_per_frame() {
        let mut f = Framer::new(1024);
        let msg = "<13>1 2026-12-01T10:00:00Z web-1 app - - - hello";
        let stream = format!(
            "{} {msg}<14>Dec  1 10:00:00 web-2 cron: plain\n11 <13>counted",
            msg.len()
        );
        let out = f.push(stream.as_bytes());
        assert_eq!(
            texts(&out),
            vec![msg, "<14>Dec  1 10:00:00 web-2 cron: plain", "<13>counted"]
        );
        assert!(out.iter().all(|f| !f.oversized && !f.incomplete));
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn a_frame_split_across_reads_is_one_frame() {
        let stream = b"17 <13>split message<13>second line\r\n";
        for cut in 0..stream.len() {
            let mut f = Framer::new(1024);
            let mut out = f.push(&stream[..cut]);
            out.extend(f.push(&stream[cut..]));
            assert_eq!(
                texts(&out),
                vec!["<13>split message", "<13>second line"],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn digits_that_are_not_a_count_start_a_line() {
        let mut f = Framer::new(1024);
        let out = f.push(b"2026-12-01 plain text line\n42\n");
        assert_eq!(texts(&out), vec!["2026-12-01 plain text line", "42"]);
    }

    #[test]
    fn a_count_that_lies_short_loses_nothing() {
        // The count says 100, 20 bytes follow, then the client hangs up.
        let mut f = Framer::new(1024);
        assert!(f.push(b"100 <13>only twenty byt").is_empty());
        let last = f.finish().expect("the partial frame");
        assert_eq!(last.data, b"<13>only twenty byt");
        assert!(last.incomplete);
        // A count that lies upwards swallows the next frame into this one:
        // still scanned, nothing lost.
        let mut f = Framer::new(1024);
        let out = f.push(b"24 <13>short\n5 <13>next and more");
        assert_eq!(texts(&out), vec!["<13>short\n5 <13>next and"]);
        assert_eq!(f.finish().unwrap().data, b"more");
    }

    #[test]
    fn oversized_frames_go_in_capped_pieces() {
        let max = 1024;
        let mut f = Framer::new(max);
        let word = "abcdefgh ";
        let line = word.repeat(1000);
        let mut out = Vec::new();
        for part in format!("{line}\n").as_bytes().chunks(700) {
            out.extend(f.push(part));
            assert!(f.held() <= max);
        }
        assert!(out.len() > 1 && out.iter().all(|p| p.data.len() <= max));
        assert!(out.iter().all(|p| p.oversized));
        assert!(!out[0].continued && out[1..].iter().all(|p| p.continued));
        // Cut after a separator: every piece ends with a whole word, and
        // together they are the line.
        assert!(out[..out.len() - 1].iter().all(|p| p.data.ends_with(b" ")));
        let joined: Vec<u8> = out.iter().flat_map(|p| p.data.clone()).collect();
        assert_eq!(joined, line.as_bytes());
        // A huge octet count is capped the same way.
        let mut f = Framer::new(max);
        let out = f.push(format!("999999999 {}", "x".repeat(5000)).as_bytes());
        assert!(out.iter().all(|p| p.data.len() <= max) && out.len() == 4);
        assert!(f.held() <= max);
    }
}
