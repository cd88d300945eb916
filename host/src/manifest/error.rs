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

/// TOML `text` (from `file`) as `T`, a syntax or shape error located. An unknown key
/// close to a known one (`instructons`) is answered with the known one.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<T, ManifestError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim();
        let message = match did_you_mean(message) {
            Some(known) => format!("{message}; did you mean `{known}`?"),
            None => message.to_string(),
        };
        locate(file, text, e.span().unwrap_or(0..0), message)
    })
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or `b`"),
/// the expected key nearest `x`, if it is near enough to be a misspelling.
fn did_you_mean(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let known = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| !k.is_empty());
    let (distance, best) = known
        .map(|k| (edit_distance(unknown, k), k))
        .min_by_key(|(d, _)| *d)?;
    // A typo or two, and never most of a short key.
    (distance <= 2 && distance < unknown.chars().count().max(best.chars().count()) / 2 + 1)
        .then_some(best)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{did_you_mean, edit_distance};

    #[test]
    fn a_near_miss_of_a_known_key_is_named() {
        assert_eq!(edit_distance("instructons", "instructions"), 1);
        assert_eq!(
            did_you_mean(
                "unknown field `instructons`, expected one of `name`, `description`, `done_definitions`, `expected_outputs`, `instructions`"
            ),
            Some("instructions")
        );
        assert_eq!(
            did_you_mean(
                "unknown field `done_definition`, expected one of `name`, `done_definitions`"
            ),
            Some("done_definitions")
        );
        assert_eq!(
            did_you_mean("unknown field `concurency`, expected `name` or `concurrency`"),
            Some("concurrency")
        );
        assert_eq!(
            did_you_mean("unknown field `colour`, expected one of `name`, `description`"),
            None,
            "nothing near"
        );
        assert_eq!(did_you_mean("invalid type: integer"), None);
    }
}
