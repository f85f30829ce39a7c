//! The `/v1` routes (see `docs/protocol.md`).
//!
//! Handlers authenticate with the [`Authenticated`] extractor (all but a
//! group's head, which any caching proxy may ask and keep), run SQLite
//! work through [`blocking`] (never on the event loop), and answer every
//! failure with an [`ErrorBody`]: [`ServerError`] renders itself, and a
//! catch-all turns actix's own error responses (unknown route, wrong method,
//! body too large) into one too.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, Service as _, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde::Deserialize;

use super::auth::Authenticated;
use super::content;
use super::error::ServerError;
use super::offload::blocking;
use super::store::Store;
use cdx::protocol::{self, now_ms, ErrorBody, PackageList, Ping, StatusReport, MAX_WAIT_MS};

/// Packages listed per response at most.
pub const PACKAGES_PER_RESPONSE: usize = 100;
/// A waiting long poll wakes on the publication signal (this process's
/// publications, and other processes' through `Store::watch_publications`);
/// it re-reads the database on its own only this often, a safety net.
const LONG_POLL_RECHECK: Duration = Duration::from_secs(5);
/// Upload bodies above this size are refused with 413. Other bodies (status
/// reports) have actix's default limit, 256 KiB; a batch of status
/// reports, [`MAX_STATUS_BATCH_BYTES`].
pub const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;
/// The largest `POST /v1/status/batch` body taken.
const MAX_STATUS_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// How often the channels' last connections are written to `server.db`.
const CONNECTIONS_FLUSH: Duration = Duration::from_secs(1);
/// How long a stopping server lets requests finish.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// Starts the server on `listener`. The returned [`Server`] must be awaited
/// (or spawned) on an actix runtime; stop it through `Server::handle`. OS
/// signals are not handled: the caller decides when to stop.
pub fn serve(store: Store, listener: std::net::TcpListener) -> std::io::Result<Server> {
    super::metrics::install();
    // Publications by other processes wake the long polls.
    store.watch_publications().map_err(std::io::Error::other)?;
    // Last connections are written here, off the request path.
    let flushed = store.clone();
    actix_rt::spawn(async move {
        loop {
            tokio::time::sleep(CONNECTIONS_FLUSH).await;
            let store = flushed.clone();
            if let Err(e) = blocking(move || store.flush_connections()).await {
                tracing::warn!(error = %e, "could not record the channels' last connections");
            }
        }
    });
    let store = web::Data::new(store);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(store.clone())
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| ServerError::Invalid(format!("bad query: {e}")).into()),
            )
            .app_data(web::PathConfig::default().error_handler(|e, _| {
                ServerError::NotFound(format!("no such resource: {e}")).into()
            }))
            .wrap(ErrorHandlers::new().default_handler(json_error_body))
            .wrap_fn(|req, srv| {
                let (method, path) = (req.method().clone(), req.path().to_owned());
                let started = Instant::now();
                let response = srv.call(req);
                async move {
                    let response = response.await?;
                    let status = response.status().as_u16();
                    let elapsed = started.elapsed();
                    let ms = elapsed.as_millis() as u64;
                    let route = response.request().match_pattern();
                    super::metrics::request(
                        route.as_deref().unwrap_or("unmatched"),
                        status,
                        elapsed.as_secs_f64(),
                    );
                    match response.response().error() {
                        Some(error) => {
                            tracing::warn!(%method, %path, status, ms, %error, "request failed")
                        }
                        None => tracing::info!(%method, %path, status, ms, "request"),
                    }
                    Ok(response)
                }
            })
            .service(
                web::scope("/v1")
                    .route("/ping", web::get().to(ping))
                    .route("/packages", web::get().to(packages))
                    .service(
                        web::resource("/groups/{group}/head")
                            .route(web::get().to(group_head))
                            .route(web::head().to(group_head)),
                    )
                    .service(
                        web::resource("/packages/{id}/content")
                            .route(web::get().to(content::package_content))
                            .route(web::head().to(content::package_content)),
                    )
                    .route("/status", web::post().to(status))
                    .service(
                        web::resource("/status/batch")
                            .app_data(web::PayloadConfig::new(MAX_STATUS_BATCH_BYTES))
                            .route(web::post().to(status_batch)),
                    )
                    .service(
                        web::resource("/uploads")
                            .app_data(web::PayloadConfig::new(MAX_UPLOAD_BYTES))
                            .route(web::post().to(upload)),
                    )
                    .route("/uploads/high-water", web::get().to(high_water))
                    .route("/sessions", web::get().to(sessions)),
            )
            .route("/metrics", web::get().to(metrics))
            .configure(super::console::routes)
            .default_service(web::to(no_route))
    })
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .listen(listener)?
    .run();
    Ok(server)
}

impl ResponseError for ServerError {
    fn status_code(&self) -> StatusCode {
        match self {
            ServerError::Record { .. } | ServerError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::Gone(_) => StatusCode::GONE,
            ServerError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServerError::NotAdmin(_)
            | ServerError::MissingCredentials(_)
            | ServerError::UnknownChannel(_)
            | ServerError::WrongSecret(_) => StatusCode::UNAUTHORIZED,
            ServerError::Io { .. } | ServerError::Db(_) | ServerError::Package(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if let ServerError::NotAdmin(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"cdx admin\""));
        } else if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"cdx\""));
        }
        response.json(ErrorBody {
            error: self.to_string(),
        })
    }
}

/// Gives every error response without a JSON body an [`ErrorBody`].
fn json_error_body<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // JSON already, or a console page made on purpose.
    let has_body = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if has_body {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let status = response.status();
    let error = match response.response().error() {
        Some(error) if !error.to_string().is_empty() => error.to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let (request, mut response) = response.into_parts();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_string(&ErrorBody { error }).expect("ErrorBody serialises");
    let response = response.set_body(body).map_into_boxed_body();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, response).map_into_right_body(),
    ))
}

async fn no_route(req: actix_web::HttpRequest) -> HttpResponse {
    ServerError::NotFound(format!("no route {} {}", req.method(), req.path())).error_response()
}

async fn ping(channel: Authenticated) -> web::Json<Ping> {
    web::Json(Ping {
        channel_id: channel.channel_id,
        data_group: channel.data_group,
        server_time_ms: now_ms(),
        // Decoded by the upload route, bounded by its size limit.
        upload_encodings: vec!["zstd".into()],
    })
}

#[derive(Debug, Deserialize)]
struct PackagesQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

/// Lists packages after `after`; with `wait_ms`, waits for one (long poll).
async fn packages(
    channel: Authenticated,
    store: web::Data<Store>,
    query: web::Query<PackagesQuery>,
) -> Result<web::Json<PackageList>, ServerError> {
    let deadline = Instant::now() + Duration::from_millis(query.wait_ms.min(MAX_WAIT_MS));
    // Subscribe before the first read, so a publication between a read and
    // the wait still wakes us.
    let mut published = store.subscribe();
    let _waiting = (query.wait_ms > 0).then(super::metrics::LongPollGuard::new);
    let packages = loop {
        let found = match store.listed_after_cached(
            &channel.data_group,
            query.after,
            PACKAGES_PER_RESPONSE,
        ) {
            Some(found) => found,
            None => {
                let (store2, group, after) =
                    (store.clone(), channel.data_group.clone(), query.after);
                blocking(move || store2.listed_after(&group, after, PACKAGES_PER_RESPONSE)).await?
            }
        };
        let now = Instant::now();
        if !found.is_empty() || now >= deadline {
            break found;
        }
        let tick = LONG_POLL_RECHECK.min(deadline - now);
        if let Ok(Err(_)) = tokio::time::timeout(tick, published.changed()).await {
            tokio::time::sleep(tick).await;
        }
    };
    // Sessions are opened for what is listed: an empty answer (an idle
    // or busy-polling store) writes nothing and needs no thread hop.
    let applied_before = if packages.is_empty() {
        None
    } else {
        let listed: Vec<_> = packages.iter().map(|p| p.package.clone()).collect();
        let (store2, channel_id, after) = (store.clone(), channel.channel_id, query.after);
        blocking(move || store2.ensure_download_sessions(&channel_id, after, &listed)).await?
    };
    Ok(web::Json(PackageList {
        data_group: channel.data_group,
        packages: store.with_content_urls(packages),
        applied_before,
    }))
}

/// `Cache-Control` of a group's head: [`protocol::HEAD_MAX_AGE_SECS`]
/// (a test checks that they agree).
const HEAD_CACHE_CONTROL: &str = "public, max-age=1";

/// `GET /v1/groups/{group}/head`: where a group's listing stands, for
/// anyone (it tells a group's newest sequence and nothing else), with
/// `Cache-Control: public, max-age=1` and the version as a strong `ETag`,
/// so that a CDN or caching proxy answers a fleet's polls with one request
/// a second per group. `If-None-Match` with the current version: 304.
async fn group_head(
    req: HttpRequest,
    store: web::Data<Store>,
    group: web::Path<String>,
) -> Result<HttpResponse, ServerError> {
    let group = group.into_inner();
    super::store::validate_name("data group", &group)?;
    let head = match store.group_head_cached(&group) {
        Some(head) => head,
        None => blocking(move || store.group_head(&group)).await?,
    };
    let etag = format!("\"{}\"", head.version);
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == etag || tag == "*")
        });
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, HEAD_CACHE_CONTROL))
        .insert_header((header::ETAG, etag));
    Ok(if unchanged {
        response.finish()
    } else {
        response.json(&*head)
    })
}

async fn status(
    channel: Authenticated,
    store: web::Data<Store>,
    body: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let report: StatusReport = parse_json(&body, "status report")?;
    blocking(move || store.record_status(&channel.channel_id, &channel.data_group, &report))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Reports of one batch, recorded in one transaction.
async fn status_batch(
    channel: Authenticated,
    store: web::Data<Store>,
    body: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let reports: Vec<StatusReport> = parse_json(&body, "status report batch")?;
    if reports.len() > protocol::MAX_STATUS_BATCH {
        return Err(ServerError::Invalid(format!(
            "{} reports in one batch; at most {} are taken",
            reports.len(),
            protocol::MAX_STATUS_BATCH
        )));
    }
    let ack =
        blocking(move || store.record_statuses(&channel.channel_id, &channel.data_group, &reports))
            .await?;
    Ok(HttpResponse::Ok().json(ack))
}

async fn upload(
    req: HttpRequest,
    channel: Authenticated,
    store: web::Data<Store>,
    body: web::Bytes,
) -> Result<HttpResponse, ServerError> {
    let zstd = match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("identity") => false,
        Some("zstd") => true,
        Some(other) => {
            return Err(ServerError::Invalid(format!(
                "Content-Encoding `{other}` is not accepted here (zstd or none)"
            )))
        }
    };
    // Decoded (bounded), parsed and stored on a blocking thread, row by
    // row from the body. Counted there too: that thread finishes what it
    // stored even when the agent went away (its request timed out) and
    // this handler was dropped, and the counters say what was stored.
    let ack = blocking(move || {
        let body = if zstd { decode_zstd(&body)? } else { body };
        let ack = store.store_upload(&channel.channel_id, &body)?;
        metrics::counter!(super::metrics::UPLOADS_STORED).increment(ack.stored);
        metrics::counter!(super::metrics::UPLOAD_DUPLICATES).increment(ack.duplicates);
        Ok(ack)
    })
    .await?;
    Ok(HttpResponse::Ok().json(ack))
}

/// A zstd upload body, decoded as a stream and stopped one byte past
/// [`MAX_UPLOAD_BYTES`]: a small body that expands without end costs the
/// limit, never more.
fn decode_zstd(body: &[u8]) -> Result<web::Bytes, ServerError> {
    use std::io::Read as _;
    let decoder = zstd::stream::read::Decoder::new(body)
        .map_err(|e| ServerError::Invalid(format!("bad zstd upload body: {e}")))?;
    let mut decoded = Vec::new();
    decoder
        .take(MAX_UPLOAD_BYTES as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|e| ServerError::Invalid(format!("bad zstd upload body: {e}")))?;
    if decoded.len() > MAX_UPLOAD_BYTES {
        return Err(ServerError::TooLarge(format!(
            "the upload body decodes to more than {MAX_UPLOAD_BYTES} bytes"
        )));
    }
    Ok(decoded.into())
}

/// `GET /metrics`: with an admin token configured, for requests that carry
/// it (`Authorization: Bearer`); without one, for loopback clients only.
async fn metrics(req: HttpRequest, store: web::Data<Store>) -> Result<HttpResponse, ServerError> {
    admin_only(&req, &store)?;
    let fleet = blocking(move || store.fleet(&super::fleet::FleetFilter::default())).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(super::metrics::render(&fleet)))
}

/// Refuses an operators' route to a client without the admin token (or,
/// when none is configured, to a client not on this machine).
pub(crate) fn admin_only(req: &HttpRequest, store: &Store) -> Result<(), ServerError> {
    match store.admin_token() {
        Some(token) => {
            let authorization = req.headers().get(header::AUTHORIZATION);
            if token.matches_bearer(authorization.and_then(|v| v.to_str().ok())) {
                Ok(())
            } else {
                Err(ServerError::NotAdmin(
                    "this route needs `Authorization: Bearer <admin token>` \
                     (serve --admin-token-file or CDX_ADMIN_TOKEN)",
                ))
            }
        }
        None if from_this_machine(req) => Ok(()),
        None => Err(ServerError::Forbidden(
            "this route answers only on this machine until an admin token is set \
             (serve --admin-token-file or CDX_ADMIN_TOKEN)",
        )),
    }
}

/// A client on this machine speaking to it directly: a loopback peer that
/// names a loopback host and comes through no proxy (a reverse proxy on
/// the same machine makes every client look local).
fn from_this_machine(req: &HttpRequest) -> bool {
    let loopback_peer = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
    let loopback_host = cdx::protocol::host_name(req.connection_info().host())
        .is_some_and(|name| cdx::protocol::is_loopback_name(&name));
    let proxied = [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
    ]
    .iter()
    .any(|h| req.headers().contains_key(*h));
    loopback_peer && loopback_host && !proxied
}

async fn high_water(
    channel: Authenticated,
    store: web::Data<Store>,
) -> Result<HttpResponse, ServerError> {
    let high_water = blocking(move || store.high_waters(&channel.channel_id)).await?;
    Ok(HttpResponse::Ok().json(high_water))
}

async fn sessions(
    channel: Authenticated,
    store: web::Data<Store>,
) -> Result<HttpResponse, ServerError> {
    let filter = super::sessions::SessionFilter {
        channel: Some(channel.channel_id),
        direction: None,
    };
    let list = blocking(move || store.sessions(&filter)).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Parses a JSON body, with a 400 that says what did not parse. (Bodies
/// over the route's size limit were refused with 413 before.)
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ServerError> {
    serde_json::from_slice(body).map_err(|e| ServerError::Invalid(format!("bad {what}: {e}")))
}
