//! Errors of proto's fallible helpers: each parser keeps its own small type (so a caller
//! can match on what went wrong), and [`Error`] gathers them for callers that handle any of
//! them alike (`?` converts). Display texts are apimachinery's, which API responses and
//! `berthctl` print as they are.

use crate::model::quantity::{FORMAT_ERROR, SUFFIX_ERROR};

/// Any error of proto's parsers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Quantity(#[from] QuantityError),
    #[error(transparent)]
    Selector(#[from] SelectorError),
}

/// A string that is not a quantity; `Display` gives apimachinery's text for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// `ErrFormatWrong`: outside the quantity grammar.
    #[error("{}", FORMAT_ERROR)]
    Format,
    /// `ErrSuffix`: the grammar holds but the suffix names no unit.
    #[error("{}", SUFFIX_ERROR)]
    Suffix,
}

/// A selector that could not be parsed; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gathering_error_keeps_each_parsers_text() {
        assert_eq!(Error::from(QuantityError::Format).to_string(), FORMAT_ERROR);
        assert_eq!(Error::from(QuantityError::Suffix).to_string(), SUFFIX_ERROR);
        let selector = crate::selectors::LabelSelector::parse("a in").unwrap_err();
        assert_eq!(Error::from(selector.clone()).to_string(), selector.0);
    }
}
