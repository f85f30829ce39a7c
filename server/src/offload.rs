//! Blocking store work, run off the event loop.

use actix_web::web;

use super::error::ServerError;

/// Runs blocking store work on the blocking thread pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ServerError>
where
    F: FnOnce() -> Result<T, ServerError> + Send + 'static,
    T: Send + 'static,
{
    web::block(f).await.map_err(|e| {
        ServerError::io(
            "running a blocking task",
            std::io::Error::other(e.to_string()),
        )
    })?
}
