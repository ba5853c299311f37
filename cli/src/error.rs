//! Every way a command fails, and the one place failures become exit codes: 2 for bad input
//! (an unknown kid, a malformed token, a missing option), 1 for anything that needs attention
//! or failed on the way.

/// Exit code of bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code of a failure, or of a report that needs attention.
pub const EXIT_ATTENTION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The operator's input cannot be used (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// An AWS call failed; the text says which call and what to do.
    #[error("{0}")]
    Aws(String),
    /// The deployment's configuration is missing or refused.
    #[error("{0}")]
    Config(String),
    /// The keyring cannot be read or is not there.
    #[error("{0}")]
    Keyring(String),
    /// The rotate function answered with an error.
    #[error("rotate failed: {code}: {message}")]
    Rotate { code: String, message: String },
    /// An HTTP fetch (discovery, JWKS) failed.
    #[error("{0}")]
    Http(String),
    /// The operator declined, or could not be asked.
    #[error("{0}")]
    NotConfirmed(String),
    /// Writing to the terminal failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::BadInput(_) => EXIT_BAD_INPUT,
            CliError::Rotate { code, .. } if code == "UnknownKid" || code == "UnrecognizedEvent" => {
                EXIT_BAD_INPUT
            }
            _ => EXIT_ATTENTION,
        }
    }
}

/// A command's outcome when it ran: whether what it reports needs attention (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Fine,
    NeedsAttention,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_exits_2_and_everything_else_1() {
        assert_eq!(CliError::BadInput("unknown kid".into()).exit_code(), 2);
        assert_eq!(CliError::Rotate { code: "UnknownKid".into(), message: String::new() }.exit_code(), 2);
        assert_eq!(CliError::Rotate { code: "KmsError".into(), message: String::new() }.exit_code(), 1);
        assert_eq!(CliError::Aws("denied".into()).exit_code(), 1);
    }
}
