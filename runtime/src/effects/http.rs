//! The HTTP destination (feature `http`): outgoing requests through reqwest.

use super::destination::{Delivery, Destination, SendError};
use super::outgoing::{Method, Outgoing};
use std::time::Duration;

/// Sends outgoing [`Request`](super::Request)s with reqwest (rustls), each
/// with its message id as the `Idempotency-Key` header, so that a receiver
/// that deduplicates takes a retried request once.
///
/// A `2xx` answer is a success. Timeouts, connection failures, `408`, `429`
/// and `5xx` are retried; any other answer (a `4xx`, a redirect not
/// followed) is permanent and dead-letters the request at once. Messages
/// are refused as permanent: give the dispatcher a message destination.
///
/// ```
/// use statefold::effects::Http;
/// use std::time::Duration;
/// let http = Http::new().timeout(Duration::from_secs(5));
/// # let _ = http;
/// ```
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// A destination with its own client, and a timeout of 10 seconds per request.
    pub fn new() -> Self {
        Self::with_client(reqwest::Client::new())
    }

    /// A destination over `client` (its proxies, certificates, pools).
    pub fn with_client(client: reqwest::Client) -> Self {
        Self { client, timeout: Duration::from_secs(10) }
    }

    /// Gives up on an attempt after `timeout` (retried later).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Destination for Http {
    async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let Outgoing::Request(request) = &delivery.outgoing else {
            return Err(SendError::permanent(
                "the HTTP destination sends requests only; give messages a destination of their own",
            ));
        };
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder =
            self.client.request(method, &request.url).timeout(self.timeout).header("Idempotency-Key", &delivery.id);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| {
            let what = if e.is_timeout() { "timed out" } else { "failed" };
            let error = format!("{} {} {what}: {e}", request.method, request.url);
            if e.is_builder() {
                SendError::permanent(error)
            } else {
                SendError::retryable(error)
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let error = format!("{} {} answered {status}", request.method, request.url);
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(SendError::retryable(error))
        } else {
            Err(SendError::permanent(error))
        }
    }
}
