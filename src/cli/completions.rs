//! `keysentry completions SHELL` and `keysentry man`: both generated from the
//! clap definition in main.rs, so they cannot drift from the real options.

use anyhow::Context;
use clap::Args;
use clap_complete::Shell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--version`: the crate version and the commit it was built from (build.rs;
/// "unknown" when built outside a git checkout), so a bug report names both.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KEYSENTRY_GIT_COMMIT"),
    ")"
);

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to generate for. Install e.g. with
    /// `keysentry completions bash > /etc/bash_completion.d/keysentry`.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "keysentry", &mut out);
    emit(&out).context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ManArgs {
    /// Write keysentry.1 and one page per subcommand (keysentry-scan.1, ...)
    /// into DIR instead of printing keysentry.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Pages in the git style: keysentry(1) lists the subcommands, each has its
/// own page with its options.
pub fn man(args: ManArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    // build() names subcommands "keysentry-scan" etc., the pages' names.
    let mut cmd = cmd.version(VERSION).disable_help_subcommand(true);
    cmd.build();
    match args.dir {
        Some(dir) => write_pages(&cmd, &dir)
            .with_context(|| format!("cannot write manual pages into {}", dir.display()))?,
        None => emit(&render(&cmd)?).context("cannot write the manual page")?,
    }
    Ok(ExitCode::SUCCESS)
}

fn write_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    std::fs::write(dir.join(format!("{}.1", page_name(cmd))), render(cmd)?)
}

fn render(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(page_name(cmd).to_uppercase())
        .render(&mut out)?;
    Ok(out)
}

fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

/// Writes to stdout; a reader that closes the pipe early (`| head`) is not an
/// error.
fn emit(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
