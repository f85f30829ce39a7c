//! The operators' console at `/console`: the fleet worst first, a page per
//! store with its sessions, and the packages of each group. Read-only,
//! server-rendered (maud), reloading itself.
//!
//! Access is the admin token's, never a channel's secret: a request carries
//! it as `Authorization: Bearer`, or a browser signs in once at
//! `/console/login` and keeps a cookie derived from it (HttpOnly,
//! SameSite=Strict). Without an admin token, only clients on this machine
//! get in.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use sha2::{Digest, Sha256};

use super::error::ServerError;
use super::fleet::{FleetFilter, StoreState};
use super::http::admin_only;
use super::offload::blocking;
use super::sessions::SessionFilter;
use super::store::Store;
use crate::metrics::channel_state;
use crate::report::age;
use cdx::html::{layout, Refresh};
use cdx::protocol::{now_ms, rfc3339_ms, ListedPackage, SessionInfo};

const COOKIE: &str = "cdx_console";
const REFRESH_SECONDS: u32 = 10;

/// Registers the console's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(fleet))
        .route("/console/stores/{channel}", web::get().to(store_page))
        .route("/console/packages", web::get().to(packages))
        .route("/console/login", web::get().to(login_form))
        .route("/console/login", web::post().to(login));
}

/// The cookie value for `token`: a hash of it, so the cookie never holds
/// the token `/metrics` takes.
fn cookie_value(token: &cdx::config::Secret) -> String {
    let mut h = Sha256::new();
    h.update(b"cdx console\0");
    h.update(token.expose().as_bytes());
    hex::encode(h.finalize())
}

/// Lets in a request with the admin token or the console's cookie; sends
/// a browser without them to the sign-in form.
fn refusal(req: &HttpRequest, store: &Store) -> Option<HttpResponse> {
    check(req, store).err().map(|boxed| *boxed)
}

fn check(req: &HttpRequest, store: &Store) -> Result<(), Box<HttpResponse>> {
    if let Some(token) = store.admin_token() {
        let signed_in = req
            .cookie(COOKIE)
            .is_some_and(|c| cdx::config::Secret::new(cookie_value(token)).matches(c.value()));
        if signed_in {
            return Ok(());
        }
    }
    match admin_only(req, store) {
        Ok(()) => Ok(()),
        Err(ServerError::NotAdmin(_)) => Err(Box::new(
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/console/login"))
                .finish(),
        )),
        Err(e) => Err(Box::new(actix_web::ResponseError::error_response(&e))),
    }
}

/// An HTML answer with the pages' headers.
fn html(code: actix_web::http::StatusCode, markup: Markup) -> HttpResponse {
    let mut response = HttpResponse::build(code);
    response.content_type("text/html; charset=utf-8");
    for h in cdx::html::PAGE_HEADERS {
        response.insert_header(h);
    }
    response.body(markup.into_string())
}

/// A console page at `path`, reloading itself.
fn page(path: &str, title: &str, body: Markup) -> HttpResponse {
    let refresh = Refresh {
        seconds: REFRESH_SECONDS,
        url: path,
    };
    html(
        actix_web::http::StatusCode::OK,
        layout(title, Some(refresh), body),
    )
}

fn nav() -> Markup {
    html! { nav { a href="/console" { "Stores" } a href="/console/packages" { "Packages" } } }
}

fn ago(now: i64, at: Option<i64>) -> String {
    at.map_or_else(
        || "never".to_owned(),
        |at| format!("{} ago", age(now.saturating_sub(at))),
    )
}

async fn fleet(req: HttpRequest, store: web::Data<Store>) -> HttpResponse {
    if let Some(out) = refusal(&req, &store) {
        return out;
    }
    let fleet = blocking(move || store.fleet(&FleetFilter::default())).await;
    match fleet {
        Ok(fleet) => page(req.path(), "cdx fleet", fleet_page(&fleet, now_ms())),
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

/// The fleet, worst first (as `fleet` sorts it): failing, then behind.
pub fn fleet_page(fleet: &[StoreState], now: i64) -> Markup {
    let count = |state: &str| fleet.iter().filter(|s| channel_state(s) == state).count();
    html! {
        (nav())
        h1 { "Stores" }
        p #summary {
            (fleet.len()) " store(s): "
            strong { (count("failing")) " failing" } ", "
            (count("behind")) " behind, " (count("in_sync")) " in sync, "
            (count("never_connected")) " never connected. "
            span.muted { "As of " (rfc3339_ms(now)) "." }
        }
        div.scroll {
            table #fleet {
                tr { th { "Store" } th { "Group" } th { "State" } th { "Applied" } th { "Behind" }
                     th { "Last connection" } th { "Problem" } th { "Last upload" } }
                @for s in fleet {
                    @let state = channel_state(s);
                    tr class=(state) {
                        td { a href={ "/console/stores/" (s.channel) } { (s.channel) } }
                        td { (s.data_group) }
                        td { (state.replace('_', " ")) }
                        td.n { (s.applied_sequence) " / " (s.latest_sequence) }
                        td.n { (s.behind)
                            @if s.waiting_since_ms.is_some() { br; span.muted { (ago(now, s.waiting_since_ms)) } } }
                        td { (ago(now, s.last_connection_ms)) }
                        td {
                            @if let Some(p) = s.problems.first() {
                                (p.direction) " " (p.job)
                                @if let Some(seq) = p.sequence { " #" (seq) }
                                ": " strong { (p.status) }
                                @if let Some(m) = &p.message { br; span.muted.err { (shorten(m)) } }
                                @if s.problems.len() > 1 { br; span.muted { "and " (s.problems.len() - 1) " more" } }
                            }
                        }
                        td { (ago(now, s.last_upload_ms))
                            @for (table, counter) in &s.high_water { br; span.muted { (table) " ≤ " (counter) } } }
                    }
                }
            }
        }
    }
}

/// Characters of an error shown in the fleet table; the store's page has
/// it whole.
const SHORT: usize = 160;

fn shorten(text: &str) -> String {
    match text.char_indices().nth(SHORT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

async fn store_page(
    req: HttpRequest,
    store: web::Data<Store>,
    channel: web::Path<String>,
) -> HttpResponse {
    if let Some(out) = refusal(&req, &store) {
        return out;
    }
    let channel = channel.into_inner();
    let found = blocking(move || {
        let state = store
            .fleet(&FleetFilter::default())?
            .into_iter()
            .find(|s| s.channel == channel)
            .ok_or_else(|| ServerError::NotFound(format!("no channel `{channel}`")))?;
        let sessions = store.sessions(&SessionFilter {
            channel: Some(channel),
            direction: None,
        })?;
        Ok((state, sessions))
    })
    .await;
    match found {
        Ok((state, sessions)) => page(
            req.path(),
            &format!("cdx store {}", state.channel),
            store_body(&state, &sessions.download, &sessions.upload, now_ms()),
        ),
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

/// One store: where it stands and its sessions, newest first.
pub fn store_body(
    s: &StoreState,
    downloads: &[SessionInfo],
    uploads: &[SessionInfo],
    now: i64,
) -> Markup {
    let state = channel_state(s);
    html! {
        (nav())
        h1 { "Store " (s.channel) }
        div class={ "box " (match state { "failing" => "bad", "in_sync" => "ok", _ => "warn" }) } #state {
            strong { (state.replace('_', " ")) } ": applied #" (s.applied_sequence) " of #"
            (s.latest_sequence) " in group " (s.data_group) "; last connection "
            (ago(now, s.last_connection_ms)) "."
        }
        h2 { "Download sessions" }
        (sessions_table("downloads", downloads, now))
        h2 { "Upload sessions" }
        (sessions_table("uploads", uploads, now))
    }
}

fn sessions_table(id: &str, sessions: &[SessionInfo], now: i64) -> Markup {
    html! {
        @if sessions.is_empty() {
            p.muted { "None." }
        } @else {
            div.scroll {
                table id=(id) {
                    tr { th { "Job / table" } th { "#" } th { "Status" } th { "Attempts" } th { "Rows" }
                         th { "Bytes" } th { "Changed" } }
                    @for x in sessions.iter().rev() {
                        tr {
                            td { (x.job) br; span.muted.id { (x.subject_id) } }
                            td.n { (x.sequence.map(|s| s.to_string()).unwrap_or_default()) }
                            td { strong { (x.status) } @if let Some(m) = &x.message { br; span.muted.err { (m) } } }
                            td.n { (x.attempts) }
                            td.n { (x.rows) }
                            td.n { (x.bytes) }
                            td { (ago(now, Some(x.modified_at_ms))) }
                        }
                    }
                }
            }
        }
    }
}

async fn packages(req: HttpRequest, store: web::Data<Store>) -> HttpResponse {
    if let Some(out) = refusal(&req, &store) {
        return out;
    }
    match blocking(move || store.listed_packages(None)).await {
        Ok(list) => page(req.path(), "cdx packages", packages_body(&list, now_ms())),
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

/// Every package, by group, newest first, with its withdrawal or
/// supersession.
pub fn packages_body(packages: &[ListedPackage], now: i64) -> Markup {
    let mut groups: Vec<&str> = packages
        .iter()
        .map(|l| l.package.data_group.as_str())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    html! {
        (nav())
        h1 { "Packages" }
        @if packages.is_empty() { p.muted { "None published." } }
        @for g in groups {
            h2 { "Group " (g) }
            div.scroll {
                table.packages {
                    tr { th { "#" } th { "Job" } th { "Kind" } th { "Rows" } th { "Bytes" } th { "Published" } th { "State" } th { "Id" } }
                    @for l in packages.iter().rev().filter(|l| l.package.data_group == g) {
                        @let p = &l.package;
                        tr {
                            td.n { (p.sequence) }
                            td { (p.job) }
                            td { (format!("{:?}", p.kind)) }
                            td.n { (p.rows) }
                            td.n { (p.bytes) }
                            td { (ago(now, Some(p.created_at_ms))) }
                            td.state {
                                @if let Some(w) = &l.withdrawn {
                                    span.bad { "withdrawn" } " by " (w.by) ": " (w.reason)
                                } @else if let Some(s) = &l.superseded_by {
                                    span.muted { "superseded by #" (s.sequence) }
                                }
                            }
                            td.id { (p.id) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login_form(store: web::Data<Store>) -> HttpResponse {
    login_page(&store, None, actix_web::http::StatusCode::OK)
}

fn login_page(
    store: &Store,
    error: Option<&str>,
    code: actix_web::http::StatusCode,
) -> HttpResponse {
    let body = html! {
        h1 { "cdx console" }
        @if store.admin_token().is_none() {
            p.box.warn { "No admin token is set: the console answers only on this machine. \
                          Start `cdx-server serve` with --admin-token-file or CDX_ADMIN_TOKEN." }
        }
        @if let Some(e) = error { div.box.bad #error { (e) } }
        form method="post" action="/console/login" {
            label for="token" { "Admin token " }
            input #token type="password" name="token" autocomplete="current-password" required;
            " " button #sign-in type="submit" { "Sign in" }
        }
    };
    html(code, layout("cdx console: sign in", None, body))
}

/// Checks the token and sets the console's cookie.
async fn login(
    req: HttpRequest,
    store: web::Data<Store>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let Some(token) = store.admin_token() else {
        return login_page(
            &store,
            Some("no admin token is set"),
            actix_web::http::StatusCode::FORBIDDEN,
        );
    };
    if !token.matches(form.token.trim()) {
        tracing::warn!(peer = ?req.peer_addr(), "console sign-in with a wrong admin token");
        return login_page(
            &store,
            Some("wrong admin token"),
            actix_web::http::StatusCode::UNAUTHORIZED,
        );
    }
    let https = req.connection_info().scheme() == "https";
    let cookie = Cookie::build(COOKIE, cookie_value(token))
        .path("/console")
        .http_only(true)
        .secure(https)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::hours(12))
        .finish();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console"))
        .cookie(cookie)
        .finish()
}
