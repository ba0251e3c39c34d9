//! One file per subcommand. Each turns its clap arguments into core types and
//! returns the process exit code: 0 clean, 1 findings, 2 error (via `Err`).

pub mod config;
pub mod daemon;
pub mod incidents;
pub mod rules;
pub mod scan;
pub mod tatum;

/// Logs go to stderr, filtered by `KEYSENTRY_LOG` (e.g. `keysentry=debug`),
/// warnings only by default so that a scan's output stays clean.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYSENTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .fmt_fields(text_log_fields())
        .with_env_filter(filter)
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
