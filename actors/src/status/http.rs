//! The status endpoint: `GET /health`, `GET /status`, and
//! `POST /control/resume` to release a suspended package.

use std::net::TcpListener;

use actix::Addr;
use actix_web::{web, App, HttpResponse, HttpServer};

use super::{GetStatus, Status};
use crate::poller::{Poller, Resume};
use crate::supervisor::Supervision;

#[derive(Clone)]
struct State {
    status: Addr<Status>,
    poller: Addr<Poller>,
    supervision: Supervision,
}

/// Serves the endpoint on `listener`. The server runs on its own worker
/// thread; its handlers only send messages to the actors.
pub fn serve(
    listener: TcpListener,
    status: Addr<Status>,
    poller: Addr<Poller>,
    supervision: Supervision,
) -> std::io::Result<actix_web::dev::Server> {
    let state = State {
        status,
        poller,
        supervision,
    };
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/health", web::get().to(health))
            .route("/status", web::get().to(status_document))
            .route("/control/resume", web::post().to(resume))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

async fn health(state: web::Data<State>) -> HttpResponse {
    let actors = state.supervision.snapshot();
    let dead: Vec<_> = actors
        .iter()
        .filter(|(_, h)| !h.alive)
        .map(|(n, _)| *n)
        .collect();
    if dead.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "degraded", "dead_actors": dead }))
    }
}

async fn status_document(state: web::Data<State>) -> HttpResponse {
    match state.status.send(GetStatus).await {
        Ok(doc) => HttpResponse::Ok().json(doc),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": "the status actor is restarting" })),
    }
}

async fn resume(state: web::Data<State>) -> HttpResponse {
    match state.poller.send(Resume).await {
        Ok(Some(package)) => HttpResponse::Ok().json(serde_json::json!({ "resumed": package })),
        Ok(None) => HttpResponse::Conflict()
            .json(serde_json::json!({ "error": "no download is suspended" })),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": "the poller is restarting" })),
    }
}
