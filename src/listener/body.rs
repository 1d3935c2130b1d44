//! Reading a request body in a handler, after the headers were found acceptable: at most a
//! given size, within [`BODY_TIMEOUT`].

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::StatusCode;

/// Longest time to receive a whole body once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body not received within {} s", BODY_TIMEOUT.as_secs())]
    TimedOut,
    #[error("body cut short: {0}")]
    Broken(String),
}

impl BodyError {
    /// The answer to give: 413, 408 or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The whole body, if it is at most `limit` bytes and arrives within [`BODY_TIMEOUT`]. A
/// `Content-Length` over the limit is refused before anything is read.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let announced = body.size_hint().lower();
    if usize::try_from(announced).map_or(true, |n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if over {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Broken(e.to_string())
            })
        }
        Err(_) => Err(BodyError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_within_the_limit_is_read() {
        let bytes = read_body(Body::from("hello"), 5).await.unwrap();
        assert_eq!(&bytes[..], b"hello");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let err = read_body(Body::from("hello!"), 5).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // Streamed, with no length announced.
        let chunks = futures_util::stream::iter(["abc", "def"].map(Ok::<_, std::io::Error>));
        let err = read_body(Body::from_stream(chunks), 5).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_come_times_out() {
        let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        let started = crate::clock::monotonic();
        let err = read_body(Body::from_stream(never), 5).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(crate::clock::monotonic() - started, BODY_TIMEOUT);
    }
}
