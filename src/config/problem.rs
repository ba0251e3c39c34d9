//! A problem found in a config: where (its YAML path) and what, and whether
//! it is the file's fault or this machine's.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file is wrong.
    Config,
    /// The machine lacks something the file names.
    Machine,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `alerts[1].url`; empty for the file as a whole.
    pub path: String,
    pub message: String,
    pub kind: ProblemKind,
}

impl Problem {
    pub(crate) fn config(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
            kind: ProblemKind::Config,
        }
    }

    pub(crate) fn machine(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
            kind: ProblemKind::Machine,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path.is_empty() {
            true => f.write_str(&self.message),
            false => write!(f, "{}: {}", self.path, self.message),
        }
    }
}
