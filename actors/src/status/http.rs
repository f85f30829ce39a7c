//! The status endpoint: the status page at `/` (with its Resume form,
//! `POST /resume`), `GET /health`, `GET /status`,
//! `POST /control/resume` to release a suspended package, and
//! `POST /control/sync-now` to poll and upload at once,
//! `POST /control/rerun/{id}` and `POST /control/cancel/{id}` for an
//! operator's rerun and cancel of one package, and
//! `GET /sessions?limit=N` for the journal's newest sessions, and
//! `GET /metrics` in the Prometheus text format.
//!
//! Only its own host can steer it. Every route answers only requests whose
//! `Host` is a loopback name or one configured (`status.allowed_hosts`), so
//! a page on another site cannot read it through DNS rebinding. Control
//! routes also need the control token (`Authorization: Bearer ...`), which
//! the agent writes at start to a file only its user can read, and refuse
//! any request a browser marks as coming from another origin.

use std::net::TcpListener;

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use cdx::config::Secret;

use super::{GetHealth, GetStatus, Status};
use crate::journal::{CountSessions, DownloadSession, Journal, Recent, UploadSession};
use crate::poller::{Operate, OperatorError, Poller, Request, Resume, SyncNow};
use crate::uploader::{UploadNow, Uploader};

/// Who may use the endpoint.
#[derive(Clone)]
pub struct ControlAccess {
    /// The bearer token control routes require.
    pub token: Secret,
    /// Host names (without port) accepted besides the loopback ones.
    pub allowed_hosts: Vec<String>,
}

#[derive(Clone)]
struct State {
    status: Addr<Status>,
    poller: Addr<Poller>,
    uploader: Addr<Uploader>,
    journal: Addr<Journal>,
    access: ControlAccess,
}

/// Serves the endpoint on `listener`. The server runs on its own worker
/// thread; its handlers only send messages to the actors.
pub fn serve(
    listener: TcpListener,
    status: Addr<Status>,
    poller: Addr<Poller>,
    uploader: Addr<Uploader>,
    journal: Addr<Journal>,
    access: ControlAccess,
) -> std::io::Result<actix_web::dev::Server> {
    let state = State {
        status,
        poller,
        uploader,
        journal,
        access,
    };
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/", web::get().to(page))
            .route("/resume", web::post().to(resume_form))
            .route("/health", web::get().to(health))
            .route("/status", web::get().to(status_document))
            .route("/sessions", web::get().to(sessions))
            .route("/metrics", web::get().to(metrics))
            .route("/control/resume", web::post().to(resume))
            .route("/control/sync-now", web::post().to(sync_now))
            .route("/control/rerun/{id}", web::post().to(rerun))
            .route("/control/cancel/{id}", web::post().to(cancel))
            .route("/control/full-sync", web::post().to(full_sync))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

fn refused(status: actix_web::http::StatusCode, error: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": error }))
}

/// The request's `Host` without its port, lower-cased.
fn host_name(req: &HttpRequest) -> Option<String> {
    cdx::protocol::host_name(req.headers().get(header::HOST)?.to_str().ok()?)
}

/// Whether `Host` names this machine's loopback or a configured name.
fn host_allowed(req: &HttpRequest, access: &ControlAccess) -> bool {
    match host_name(req) {
        Some(name) => {
            cdx::protocol::is_loopback_name(&name)
                || access
                    .allowed_hosts
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&name))
        }
        None => false,
    }
}

/// Refuses a request for a foreign `Host` (403).
// The `Err` is the refusal itself, made once on the refusing path only.
#[allow(clippy::result_large_err)]
fn check_host(req: &HttpRequest, access: &ControlAccess) -> Result<(), HttpResponse> {
    if host_allowed(req, access) {
        Ok(())
    } else {
        Err(refused(
            actix_web::http::StatusCode::FORBIDDEN,
            "this status endpoint answers only for its own host name \
             (add others to status.allowed_hosts)",
        ))
    }
}

/// A control call must come from the same origin (or from no browser at
/// all) and carry the control token.
#[allow(clippy::result_large_err)]
fn check_control(req: &HttpRequest, access: &ControlAccess) -> Result<(), HttpResponse> {
    let authorization = req.headers().get(header::AUTHORIZATION);
    let token_ok = access
        .token
        .matches_bearer(authorization.and_then(|v| v.to_str().ok()));
    check_control_with(req, access, token_ok)
}

/// As [`check_control`], once the token (from a header or a form) is
/// found right or wrong.
#[allow(clippy::result_large_err)]
fn check_control_with(
    req: &HttpRequest,
    access: &ControlAccess,
    token_ok: bool,
) -> Result<(), HttpResponse> {
    check_host(req, access)?;
    let forbidden = actix_web::http::StatusCode::FORBIDDEN;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let same = origin
            .to_str()
            .is_ok_and(|o| o == format!("http://{host}") || o == format!("https://{host}"));
        if !same {
            return Err(refused(
                forbidden,
                "cross-origin control requests are refused",
            ));
        }
    }
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() != b"same-origin" && v.as_bytes() != b"none");
    if cross_site {
        return Err(refused(
            forbidden,
            "cross-site control requests are refused",
        ));
    }
    if !token_ok {
        return Err(refused(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "control calls need `Authorization: Bearer <token>`; the token is in the \
             agent's control token file (status.control_token_file)",
        ));
    }
    Ok(())
}

async fn health(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refusal) = check_host(&req, &state.access) {
        return refusal;
    }
    match state.status.send(GetHealth).await {
        Ok(h) if h.healthy => HttpResponse::Ok().json(serde_json::json!({ "status": "ok" })),
        Ok(h) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "unhealthy", "reasons": h.reasons })),
        Err(_) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "unhealthy", "reasons": ["the status actor is restarting"]
        })),
    }
}

/// The newest sessions the journal keeps, per direction.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SessionsDocument {
    pub downloads: Vec<DownloadSession>,
    pub uploads: Vec<UploadSession>,
}

#[derive(serde::Deserialize)]
struct SessionsQuery {
    limit: Option<usize>,
}

/// Sessions a `GET /sessions` answers with at most, per direction.
const MAX_SESSIONS: usize = 10_000;

async fn sessions(
    req: HttpRequest,
    state: web::Data<State>,
    query: web::Query<SessionsQuery>,
) -> HttpResponse {
    if let Err(refusal) = check_host(&req, &state.access) {
        return refusal;
    }
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_SESSIONS);
    match state.journal.send(Recent { limit }).await {
        Ok(Ok((downloads, uploads))) => {
            HttpResponse::Ok().json(SessionsDocument { downloads, uploads })
        }
        Ok(Err(e)) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": format!("message database: {e}") })),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": "the journal is restarting" })),
    }
}

async fn status_document(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refusal) = check_host(&req, &state.access) {
        return refusal;
    }
    match state.status.send(GetStatus).await {
        Ok(doc) => HttpResponse::Ok().json(doc),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": "the status actor is restarting" })),
    }
}

async fn metrics(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refusal) = check_host(&req, &state.access) {
        return refusal;
    }
    let (Ok(doc), Ok(Ok(sessions))) = (
        state.status.send(GetStatus).await,
        state.journal.send(CountSessions).await,
    ) else {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": "the status actor or the journal is restarting" }));
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(super::metrics::render(&doc, &sessions))
}

/// Polls headquarters and uploads now instead of at the next intervals
/// (a poll already under way, a long poll included, is that poll).
async fn sync_now(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refusal) = check_control(&req, &state.access) {
        return refusal;
    }
    let poll = state.poller.send(SyncNow).await;
    let upload = state.uploader.send(UploadNow).await;
    if poll.is_err() || upload.is_err() {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": "the poller or the uploader is restarting" }));
    }
    HttpResponse::Accepted().json(serde_json::json!({ "poll": "started", "upload": "started" }))
}

/// The status page (`/`).
async fn page(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refusal) = check_host(&req, &state.access) {
        return refusal;
    }
    let resumed = web::Query::<PageQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().resumed);
    render_page(
        &state,
        resumed.map(super::page::Notice::Resumed),
        actix_web::http::StatusCode::OK,
    )
    .await
}

#[derive(serde::Deserialize)]
struct PageQuery {
    resumed: Option<String>,
}

async fn render_page(
    state: &State,
    notice: Option<super::page::Notice>,
    code: actix_web::http::StatusCode,
) -> HttpResponse {
    match state.status.send(GetStatus).await {
        Ok(doc) => {
            let mut page = HttpResponse::build(code);
            page.content_type("text/html; charset=utf-8");
            for h in cdx::html::PAGE_HEADERS {
                page.insert_header(h);
            }
            page.body(
                super::page::render(&doc, cdx::protocol::now_ms(), notice.as_ref()).into_string(),
            )
        }
        Err(_) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("the status actor is restarting; reload in a moment"),
    }
}

#[derive(serde::Deserialize)]
struct ResumeForm {
    token: String,
}

/// The page's Resume button: the control token comes in the form. On
/// success, back to the page (303, so a reload does not post again).
async fn resume_form(
    req: HttpRequest,
    state: web::Data<State>,
    form: web::Form<ResumeForm>,
) -> HttpResponse {
    use super::page::Notice;
    let token_ok = state.access.token.matches(form.token.trim());
    if let Err(refusal) = check_control_with(&req, &state.access, token_ok) {
        let why = if refusal.status() == actix_web::http::StatusCode::UNAUTHORIZED {
            "wrong control token (it is in the agent's status.control_token_file)".to_owned()
        } else {
            return refusal;
        };
        return render_page(&state, Some(Notice::Refused(why)), refusal.status()).await;
    }
    match state.poller.send(Resume).await {
        Ok(Some(package)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("/?resumed={package}")))
            .finish(),
        Ok(None) => {
            let why = "no download is suspended".to_owned();
            render_page(
                &state,
                Some(Notice::Refused(why)),
                actix_web::http::StatusCode::CONFLICT,
            )
            .await
        }
        Err(_) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("the poller is restarting; go back and try again"),
    }
}

async fn resume(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refusal) = check_control(&req, &state.access) {
        return refusal;
    }
    match state.poller.send(Resume).await {
        Ok(Some(package)) => HttpResponse::Ok().json(serde_json::json!({ "resumed": package })),
        Ok(None) => HttpResponse::Conflict()
            .json(serde_json::json!({ "error": "no download is suspended" })),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": "the poller is restarting" })),
    }
}

/// How long a rerun or cancel may wait for the pass in hand and run; past
/// it the caller is told to look at the status (a queued request is then
/// dropped, never carried out behind its back).
const OPERATE_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

async fn rerun(req: HttpRequest, state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    operate(req, state, &id, Request::Rerun).await
}

async fn cancel(req: HttpRequest, state: web::Data<State>, id: web::Path<String>) -> HttpResponse {
    operate(req, state, &id, Request::Cancel).await
}

async fn full_sync(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refusal) = check_control(&req, &state.access) {
        return refusal;
    }
    carry_out(&state, Request::FullSync).await
}

/// An operator's request about one package: 200 with what was done, 404
/// for a package the agent has no session of, 409 with the reason when
/// refused, 503 when headquarters or the database failed meanwhile.
async fn operate(
    req: HttpRequest,
    state: web::Data<State>,
    id: &str,
    request: fn(uuid::Uuid) -> Request,
) -> HttpResponse {
    if let Err(refusal) = check_control(&req, &state.access) {
        return refusal;
    }
    let Ok(id) = uuid::Uuid::parse_str(id) else {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({ "error": format!("`{id}` is not a package id (a UUID)") }));
    };
    carry_out(&state, request(id)).await
}

/// Queues `request` with the poller and answers with its outcome.
async fn carry_out(state: &State, request: Request) -> HttpResponse {
    let error = |e: String| serde_json::json!({ "error": e });
    let (answer, answered) = tokio::sync::oneshot::channel();
    let operate = Operate { request, answer };
    if state.poller.send(operate).await.is_err() {
        return HttpResponse::ServiceUnavailable().json(error("the poller is restarting".into()));
    }
    // Dropping `answered` on the timeout withdraws a request not started.
    match tokio::time::timeout(OPERATE_WAIT, answered).await {
        Ok(Ok(Ok(done))) => HttpResponse::Ok().json(serde_json::json!({ "done": done })),
        Ok(Ok(Err(e @ OperatorError::Unknown(_)))) => {
            HttpResponse::NotFound().json(error(e.to_string()))
        }
        Ok(Ok(Err(e @ OperatorError::Refused(_)))) => {
            HttpResponse::Conflict().json(error(e.to_string()))
        }
        Ok(Ok(Err(e @ (OperatorError::Failed(_) | OperatorError::Unavailable(_))))) => {
            HttpResponse::ServiceUnavailable().json(error(e.to_string()))
        }
        Ok(Err(_)) => HttpResponse::ServiceUnavailable().json(error(
            "the poller restarted before it got to the request; try again".into(),
        )),
        Err(_) => HttpResponse::ServiceUnavailable().json(error(format!(
            "no answer within {}s: the agent is busy with a transfer (see `cdx-client status`); \
             try again",
            OPERATE_WAIT.as_secs()
        ))),
    }
}
