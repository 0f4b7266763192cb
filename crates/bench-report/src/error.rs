//! Why a report could not be written: [`ReportError`], one variant per kind of failure, each
//! naming the file or directory concerned.

use std::path::{Path, PathBuf};

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading criterion's output or writing a report file failed. The OS error is the
    /// cause (`source()`), not repeated in the message: error chains print it once.
    #[error("{}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A criterion file is not the JSON we expect.
    #[error("{}: {detail}", path.display())]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// No benchmark results were found.
    #[error(
        "no criterion results under {} (run `cargo bench -p racelab-benches` first)",
        dir.display()
    )]
    Empty {
        /// The directory searched.
        dir: PathBuf,
    },
}

/// For `map_err`: an I/O error on `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.to_path_buf(), source }
}
