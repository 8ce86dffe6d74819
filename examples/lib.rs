//! Shared bits of the examples: how an example checks that what it demonstrates happened.
//!
//! Every example ends with a few checks and exits with status 1 when one failed, so running the
//! examples (as `tests/run_examples.rs` does in CI) tests them.

use std::fmt;

/// The checks at the end of an example: each prints `ok` or `FAILED` with what it checked.
///
/// ```
/// let mut checks = shareworker_examples::Checks::new();
/// checks.check(1 + 1 == 2, "arithmetic holds");
/// assert!(checks.finish().is_ok());
/// ```
#[derive(Debug, Default)]
pub struct Checks {
    failed: usize,
    total: usize,
}

impl Checks {
    /// No checks yet; prints the heading.
    pub fn new() -> Self {
        println!("\nchecks:");
        Self::default()
    }

    /// Records and prints one check.
    pub fn check(&mut self, ok: bool, what: impl fmt::Display) -> bool {
        self.total += 1;
        if ok {
            println!("  ok      {what}");
        } else {
            self.failed += 1;
            println!("  FAILED  {what}");
        }
        ok
    }

    /// `Ok` when every check passed; return it from `main` to exit with status 1 otherwise.
    ///
    /// # Errors
    /// [`ChecksFailed`] when a check failed.
    pub fn finish(self) -> Result<(), ChecksFailed> {
        if self.failed == 0 {
            Ok(())
        } else {
            Err(ChecksFailed {
                failed: self.failed,
                total: self.total,
            })
        }
    }
}

/// Some checks of an example failed.
pub struct ChecksFailed {
    failed: usize,
    total: usize,
}

// `main` returning `Err` prints the error's Debug form: make it the sentence.
impl fmt::Debug for ChecksFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ChecksFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} checks failed (see FAILED above): the example did not show what it should",
            self.failed, self.total
        )
    }
}

impl std::error::Error for ChecksFailed {}
