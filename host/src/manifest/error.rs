//! Manifest errors: every one names the file, line and column (1-based) and says what
//! was expected.

use std::ops::Range;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A manifest problem, located.
#[derive(Debug, Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Byte offset → (line, column), both 1-based.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// An error at byte `span` of `text`, read from `file`.
pub(crate) fn locate(
    file: &Path,
    text: &str,
    span: Range<usize>,
    message: String,
) -> ManifestError {
    let (line, column) = line_col(text, span.start);
    ManifestError {
        file: file.to_path_buf(),
        line,
        column,
        message,
    }
}

/// TOML `text` (from `file`) as `T`, a syntax or shape error located.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<T, ManifestError> {
    toml::from_str(text).map_err(|e| {
        locate(
            file,
            text,
            e.span().unwrap_or(0..0),
            e.message().trim().to_string(),
        )
    })
}
