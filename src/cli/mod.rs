//! One file per subcommand. Each turns its clap arguments into core types and
//! returns the process exit code: 0 clean, 1 findings, 2 error (via `Err`).
//! The helpers below are shared by the commands that print: colour, stdout
//! that tolerates a closed pipe, the error chain, plurals and sizes.

pub mod completions;
pub mod config;
pub mod daemon;
pub mod incidents;
pub mod rules;
pub mod scan;
mod summary;
pub mod tatum;

use std::io::Write;
use std::sync::OnceLock;

/// Logs go to stderr, filtered by `KEYSENTRY_LOG` (e.g. `keysentry=debug`),
/// warnings only by default so that a scan's output stays clean.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYSENTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .fmt_fields(text_log_fields())
        .with_env_filter(filter)
        .with_ansi(use_color(std::io::IsTerminal::is_terminal(
            &std::io::stderr(),
        )))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Field formatting for text logs: every value (file names, ref names, a
/// provider's answer) with control characters escaped, so a file named
/// `a\x1b[2J.log` cannot drive the terminal or forge a log line. JSON logs
/// escape on their own.
pub fn text_log_fields(
) -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let shown = format!("{value:?}");
        let shown = keysentry::report::escape(&shown);
        match field.name() {
            "message" => write!(w, "{shown}"),
            name => write!(w, "{name}={shown}"),
        }
    })
    .delimited(" ")
}

/// `--color`: `auto` colours a terminal unless `NO_COLOR` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

static COLOR: OnceLock<ColorChoice> = OnceLock::new();

/// Set once by `main` from the global `--color` flag.
pub fn set_color(choice: ColorChoice) {
    let _ = COLOR.set(choice);
}

/// Whether output to a stream (a terminal or not) gets ANSI colour. An
/// explicit `--color always|never` wins over `NO_COLOR`, as no-color.org
/// asks; any non-empty `NO_COLOR` turns `auto` off.
pub fn use_color(stream_is_terminal: bool) -> bool {
    match COLOR.get().copied().unwrap_or_default() {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stream_is_terminal && std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty())
        }
    }
}

/// Stdout for command output. When the reader has gone (`keysentry … | head
/// -1`) the rest of the output is dropped and the command finishes with its
/// usual status: there is no one left to read it, and an error or a panic
/// would hide the status (findings or not) behind noise.
pub fn stdout() -> QuietPipe<std::io::StdoutLock<'static>> {
    QuietPipe {
        inner: std::io::stdout().lock(),
        closed: false,
    }
}

pub struct QuietPipe<W: Write> {
    inner: W,
    closed: bool,
}

impl<W: Write> QuietPipe<W> {
    fn quiet(&mut self, r: std::io::Result<usize>, len: usize) -> std::io::Result<usize> {
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(len)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for QuietPipe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.quiet(r, buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush().map(|()| 0);
        self.quiet(r, 0).map(|_| ())
    }
}

/// The error and its causes, `: `-separated, each said once. Core errors
/// put their source into their own message (`cannot listen on …: Address
/// already in use; pick a free port`) and also return it as `source()`, so
/// anyhow's `{:#}` printed it twice; a cause already in the text is skipped.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// `1 file`, `2 files`; `unit` is the singular, the plural adds `s`.
pub fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// A byte count in binary units: `512 B`, `1.2 KiB`, `20.0 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1_258_291), "1.2 MiB");
        assert_eq!(size(20 << 20), "20.0 MiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(0, "file"), "0 files");
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(2, "finding"), "2 findings");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:1 (http.listen): {source}; pick a free port")]
    struct Listen {
        source: std::io::Error,
    }

    #[test]
    fn a_source_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(Listen { source: io }).context("daemon with config c.yaml");
        assert_eq!(
            error_text(&e),
            "daemon with config c.yaml: cannot listen on 127.0.0.1:1 (http.listen): \
             Address already in use; pick a free port"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), "outer: inner");
    }

    #[test]
    fn a_closed_pipe_ends_output_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        let mut out = QuietPipe {
            inner: Closed,
            closed: false,
        };
        assert!(writeln!(out, "one").is_ok());
        assert!(out.flush().is_ok());
        assert!(out.closed);
    }
}
