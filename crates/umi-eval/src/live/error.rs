//! What can go wrong in a live evaluation.

use std::path::PathBuf;

use umi_agent::AgentError;

/// What can go wrong in a live evaluation (a wrong or failed run is never an error: it is a
/// record that does not pass).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {error}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A line of a task or results file is not valid.
    #[error("{} line {line}: {message}", .path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A task file without tasks.
    #[error("{} holds no tasks", .0.display())]
    NoTasks(PathBuf),
    /// The tool server could not start, or its tool docs could not be read.
    #[error("tool server: {0}")]
    Tools(String),
    /// A model could not generate.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A result record could not be written to the sink.
    #[error("writing a result record: {0}")]
    Sink(std::io::Error),
}

/// `Result` with the live evaluation's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
