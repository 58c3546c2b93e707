//! `Client`: the hub's address, credential and client id, the HTTP connection pool, and the
//! timeouts and retry bounds every request uses. Cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// A handle on one hub. Clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    /// The hub's base URL without a trailing slash, e.g. `http://127.0.0.1:1700`.
    pub(crate) base: String,
    /// Sent as `Authorization: Bearer …`; never logged or put in an error.
    pub(crate) token: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) request_timeout: Duration,
    pub(crate) publish_attempts: u32,
    pub(crate) keepalive: Duration,
    pub(crate) keepalive_misses: u32,
    pub(crate) max_frame_bytes: usize,
}

/// Settings for a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    client_id: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    publish_attempts: u32,
    keepalive: Duration,
    keepalive_misses: u32,
    max_frame_bytes: usize,
}

impl Client {
    /// A client for the hub at `url` (e.g. `http://127.0.0.1:1700`) with default settings.
    pub fn new(url: &str) -> Result<Client, Error> {
        Client::builder(url).build()
    }

    /// Settings for a client of the hub at `url`.
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            token: None,
            client_id: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            publish_attempts: 6,
            keepalive: Duration::from_secs(30),
            keepalive_misses: 3,
            max_frame_bytes: 16 << 20,
        }
    }

    /// The hub's base URL.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let inner = &self.inner;
        let mut req = inner.http.request(method, format!("{}{path}", inner.base));
        if let Some(token) = &inner.token {
            req = req.bearer_auth(token);
        }
        if let Some(id) = &inner.client_id {
            req = req.header("x-client-id", id);
        }
        req
    }
}

/// Bound on an error answer read for its message.
pub(crate) const MAX_ERROR_BYTES: usize = 64 << 10;

/// Reads a response body of at most `max` bytes: a larger one is cut off (`Ok` with what fit
/// when `truncate`, a protocol error otherwise), so a broken hub cannot grow memory without
/// bound.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
    truncate: bool,
) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Error::from_reqwest)? {
        if body.len() + chunk.len() > max {
            if truncate {
                body.extend_from_slice(&chunk[..max - body.len()]);
                return Ok(body);
            }
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("the hub's answer is larger than {max} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl ClientBuilder {
    /// A bearer token sent with every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// A stable client id, sent as `X-Client-Id`, so the hub can keep this client's place
    /// while it is away and not echo its own publishes back to it.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// How long a connection may take to open [default: 10 s].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a publish, or a subscription's response head, may take [default: 30 s].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many times a publish is attempted before a transient failure is returned
    /// [default: 6, about 8 s of retrying]. At least 1.
    pub fn publish_attempts(mut self, attempts: u32) -> Self {
        self.publish_attempts = attempts.max(1);
        self
    }

    /// The hub's keep-alive interval and how many of them may pass without a byte before a
    /// stream is taken for dead and reopened [default: 30 s × 3].
    pub fn keepalive(mut self, interval: Duration, misses: u32) -> Self {
        self.keepalive = interval;
        self.keepalive_misses = misses.max(1);
        self
    }

    /// The largest stream frame (one event) accepted [default: 16 MiB]; a larger one is a
    /// protocol error, so a broken or hostile hub cannot grow memory without bound.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// Checks the settings and opens the connection pool.
    pub fn build(self) -> Result<Client, Error> {
        let base = self.url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("url `{base}`: {e}")))?;
        // This build carries no TLS stack: say so now rather than fail on every attempt.
        if parsed.scheme() != "http" {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("url `{base}`: the scheme must be http (this client has no TLS)"),
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("url `{base}`: give the hub's base URL, without a query"),
            ));
        }
        for (what, value) in [("token", &self.token), ("client id", &self.client_id)] {
            if let Some(v) = value
                && (v.is_empty() || reqwest::header::HeaderValue::from_str(v).is_err())
            {
                // The value itself is not repeated: it may be a secret.
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{what}: must be non-empty visible ASCII"),
                ));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(Error::from_reqwest)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token: self.token,
                client_id: self.client_id,
                request_timeout: self.request_timeout,
                publish_attempts: self.publish_attempts,
                keepalive: self.keepalive,
                keepalive_misses: self.keepalive_misses,
                max_frame_bytes: self.max_frame_bytes,
            }),
        })
    }
}

/// Stands in for a secret in `Debug` output.
fn redact(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &redact(&self.token))
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &redact(&self.token))
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::read_capped;
    use crate::ErrorKind;

    fn response(len: usize) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(vec![b'x'; len]))
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_a_bound() {
        assert_eq!(
            read_capped(response(10), 10, false)
                .await
                .expect("fits")
                .len(),
            10
        );
        let e = read_capped(response(11), 10, false)
            .await
            .expect_err("too big");
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert_eq!(
            read_capped(response(11), 10, true)
                .await
                .expect("cut")
                .len(),
            10
        );
    }
}
