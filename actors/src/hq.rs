//! The agent's side of the protocol: one typed call per route of
//! `docs/protocol.md`.
//!
//! A reqwest `Client` is bound to the runtime that built it, so an
//! `HqClient` is built on the arbiter whose actors use it, never shared
//! across runtimes.

use std::time::Duration;

use cdx::config::{Secret, ServerConfig};
use cdx::failure::FailureClass;
use cdx::protocol::{
    self, ErrorBody, GroupHead, HighWater, PackageList, Ping, StatusBatchAck, StatusReport,
    UploadAck,
};
use reqwest::{RequestBuilder, Response, StatusCode};
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Error)]
pub enum HqError {
    #[error("cannot reach the server at {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("the server at {url} did not answer in time")]
    Timeout { url: String },
    #[error("the server refused the channel database's credentials: {message}")]
    Unauthorized { message: String },
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    /// A 2xx answer that is not what the route answers.
    #[error("{url}: {message}")]
    BadAnswer { url: String, message: String },
}

impl HqError {
    /// Unreachable, slow, overloaded or refusing the credentials: transient.
    /// A 4xx other than 401, 403, 408 and 429 says the request is wrong.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Status { status, .. } => cdx::failure::http_status(*status),
            Self::Connect { .. }
            | Self::Timeout { .. }
            | Self::Unauthorized { .. }
            | Self::Transport { .. }
            | Self::BadAnswer { .. } => FailureClass::Transient,
        }
    }

    fn from_reqwest(url: &str, source: reqwest::Error) -> Self {
        let url = url.to_string();
        if source.is_timeout() {
            Self::Timeout { url }
        } else if source.is_connect() {
            Self::Connect { url, source }
        } else {
            Self::Transport { url, source }
        }
    }
}

/// The largest answer [`HqClient::head`] reads.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct HqClient {
    http: reqwest::Client,
    base: String,
    channel_id: String,
    secret: Secret,
    request_timeout: Duration,
}

impl HqClient {
    pub fn new(config: &ServerConfig) -> Result<Self, HqError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.request_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|source| HqError::Transport {
                url: config.url.clone(),
                source,
            })?;
        Ok(Self {
            http,
            base: config.url.clone(),
            channel_id: config.channel_id.clone(),
            secret: config.secret.clone(),
            request_timeout: config.request_timeout,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the channel's credentials and no total deadline
    /// (package bodies may take long; reads are bounded by `read_timeout`).
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth(&self.channel_id, Some(self.secret.expose()))
    }

    fn api(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.request(method, path).timeout(self.request_timeout)
    }

    /// A request to a URL outside the API (a package's `content_url` on a
    /// CDN): the same client and timeouts, and no credentials.
    pub fn plain(&self, method: reqwest::Method, url: &str) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends and maps any non-2xx answer to an error carrying the server's message.
    pub async fn send(&self, path: &str, req: RequestBuilder) -> Result<Response, HqError> {
        self.send_to(&self.url(path), req).await
    }

    /// [`send`](Self::send) for a request built for `url`.
    pub async fn send_to(&self, url: &str, req: RequestBuilder) -> Result<Response, HqError> {
        let (client, request) = req.build_split();
        let request = request.map_err(|e| HqError::from_reqwest(url, e))?;
        let credentials = request
            .headers()
            .contains_key(reqwest::header::AUTHORIZATION);
        let resp = client
            .execute(request)
            .await
            .map_err(|e| HqError::from_reqwest(url, e))?;
        check(url, resp, credentials).await
    }

    pub async fn ping(&self) -> Result<Ping, HqError> {
        let resp = self
            .send(
                protocol::PING,
                self.api(reqwest::Method::GET, protocol::PING),
            )
            .await?;
        json(protocol::PING, resp).await
    }

    /// Packages after `after`, held by the server up to `wait` if none yet.
    pub async fn packages(&self, after: u64, wait: Duration) -> Result<PackageList, HqError> {
        let wait_ms = wait.as_millis() as u64;
        let req = self
            .request(reqwest::Method::GET, protocol::PACKAGES)
            .query(&[("after", after), ("wait_ms", wait_ms)])
            .timeout(self.request_timeout + wait);
        let resp = self.send(protocol::PACKAGES, req).await?;
        json(protocol::PACKAGES, resp).await
    }

    pub async fn report(&self, report: &StatusReport) -> Result<(), HqError> {
        let req = self
            .api(reqwest::Method::POST, protocol::STATUS)
            .json(report);
        self.send(protocol::STATUS, req).await.map(drop)
    }

    /// Several reports in one request, in order (`POST /v1/status/batch`).
    pub async fn report_batch(&self, reports: &[StatusReport]) -> Result<StatusBatchAck, HqError> {
        let req = self
            .api(reqwest::Method::POST, protocol::STATUS_BATCH)
            .json(reports);
        let resp = self.send(protocol::STATUS_BATCH, req).await?;
        json(protocol::STATUS_BATCH, resp).await
    }

    /// Sends an encoded upload batch (JSON, compressed with zstd when
    /// `compressed`); returns the acknowledgement.
    pub async fn upload(&self, body: bytes::Bytes, compressed: bool) -> Result<UploadAck, HqError> {
        let mut req = self
            .api(reqwest::Method::POST, protocol::UPLOADS)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if compressed {
            req = req.header(reqwest::header::CONTENT_ENCODING, "zstd");
        }
        let resp = self.send(protocol::UPLOADS, req.body(body)).await?;
        json(protocol::UPLOADS, resp).await
    }

    pub async fn high_water(&self) -> Result<HighWater, HqError> {
        let req = self.api(reqwest::Method::GET, protocol::HIGH_WATER);
        let resp = self.send(protocol::HIGH_WATER, req).await?;
        json(protocol::HIGH_WATER, resp).await
    }

    /// `data_group`'s head, asked of `base` (a CDN, a caching proxy or
    /// headquarters) without credentials. `Ok(None)`: still at `known` (a
    /// 304 to `If-None-Match`, or the same version). The answer is read up
    /// to [`MAX_HEAD_BYTES`]: whatever stands in front of headquarters
    /// cannot make the agent hold more.
    pub async fn head(
        &self,
        base: &str,
        data_group: &str,
        known: Option<&str>,
    ) -> Result<Option<GroupHead>, HqError> {
        let url = format!("{base}{}", protocol::group_head_path(data_group));
        let mut req = self
            .plain(reqwest::Method::GET, &url)
            .timeout(self.request_timeout);
        if let Some(version) = known {
            req = req.header(reqwest::header::IF_NONE_MATCH, format!("\"{version}\""));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| HqError::from_reqwest(&url, e))?;
        if resp.status() == StatusCode::NOT_MODIFIED && known.is_some() {
            return Ok(None);
        }
        let mut resp = check(&url, resp, false).await?;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| HqError::from_reqwest(&url, e))?
        {
            if body.len() + chunk.len() > MAX_HEAD_BYTES {
                return Err(HqError::BadAnswer {
                    url,
                    message: format!("a group's head of more than {MAX_HEAD_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let head: GroupHead = serde_json::from_slice(&body).map_err(|e| HqError::BadAnswer {
            url: url.clone(),
            message: format!("not a group's head: {e}"),
        })?;
        if head.data_group != data_group {
            return Err(HqError::BadAnswer {
                url,
                message: format!(
                    "the head of data group `{}` answered for `{data_group}`",
                    protocol::printable(&head.data_group)
                ),
            });
        }
        Ok((Some(head.version.as_str()) != known).then_some(head))
    }

    pub fn content_path(id: Uuid) -> String {
        protocol::package_content_path(id)
    }
}

/// Maps a non-2xx answer to an error. A 401 or 403 to a request that
/// carried the channel's credentials says they were refused; to one that
/// carried none (a CDN, a group's head) it is that URL's HTTP error.
async fn check(url: &str, resp: Response, credentials: bool) -> Result<Response, HqError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    // The server's words go into logs and status documents: escaped.
    let message = protocol::printable(
        &serde_json::from_str::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or(body),
    );
    if credentials && (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN) {
        return Err(HqError::Unauthorized { message });
    }
    Err(HqError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        message,
    })
}

async fn json<T: serde::de::DeserializeOwned>(path: &str, resp: Response) -> Result<T, HqError> {
    let url = resp.url().to_string();
    resp.json().await.map_err(|source| HqError::Transport {
        url: if url.is_empty() { path.into() } else { url },
        source,
    })
}
