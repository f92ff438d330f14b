//! The one error type of the binary's edge: a readable one-line message and
//! the exit code that goes with it.

use std::fmt;

/// Exit code when the network (or a check) said no, as `nc` does.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad usage; clap uses the same for the errors it reports.
pub const EXIT_USAGE: u8 = 2;

/// What kind of failure ended the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Refused, unreachable, timed out, lost, a failed check: exit 1.
    Failure,
    /// Something the user typed cannot work: exit 2.
    Usage,
}

/// A failure, shown as one line `hostnet: MESSAGE` on stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    message: String,
}

impl Error {
    /// The network or a check said no.
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Failure,
            message: message.into(),
        }
    }

    /// The user asked for something that cannot work.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Usage,
            message: message.into(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The process exit code for it.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            Kind::Failure => EXIT_FAILURE,
            Kind::Usage => EXIT_USAGE,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
