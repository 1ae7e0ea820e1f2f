//! The lab's error type.

use std::io;

/// What can go wrong building or driving a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// Namespaces, veths and qdiscs need CAP_NET_ADMIN and CAP_SYS_ADMIN.
    #[error("the lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run as root or with sudo")]
    NotRoot,
    /// An `ip`, `tc` or other command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The lab configuration is invalid.
    #[error("invalid lab configuration: {0}")]
    Config(String),
    /// No path of that name in this lab.
    #[error("no path named {0:?} in this lab")]
    UnknownPath(String),
    /// A measurement failed (no reply, timeout).
    #[error("measurement failed: {0}")]
    Measure(String),
    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The error.
        source: io::Error,
    },
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        LabError::Io { what: what.into(), source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
