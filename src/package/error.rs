use thiserror::Error;

/// What is wrong with a package. The caller adds which package it was.
#[derive(Debug, Error)]
pub enum PackageError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
