//! The one error of the harness: which step failed, and why. A benchmark that fails stops;
//! nothing matches on the cause, so a boxed source is enough.

use std::error::Error;
use std::fmt;

/// A benchmark step failed.
#[derive(Debug)]
pub struct BenchError {
    step: String,
    source: Box<dyn Error + Send + Sync>,
}

/// The result of a benchmark step.
pub type BenchResult<T> = Result<T, BenchError>;

impl BenchError {
    /// A failure of `step` for `reason`.
    pub fn new(step: impl Into<String>, reason: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            step: step.into(),
            source: reason.into(),
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

impl Error for BenchError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Names the step a fallible call belongs to.
pub trait Step<T> {
    /// Turns the error into a [`BenchError`] of `step`.
    ///
    /// # Errors
    /// The original error, wrapped.
    fn step(self, step: impl Into<String>) -> BenchResult<T>;
}

impl<T, E: Into<Box<dyn Error + Send + Sync>>> Step<T> for Result<T, E> {
    fn step(self, step: impl Into<String>) -> BenchResult<T> {
        self.map_err(|error| BenchError::new(step, error))
    }
}
