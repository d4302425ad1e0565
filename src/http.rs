//! The HTTP side of the service (actix-web): `/metrics` (Prometheus text), `/healthz`
//! (200 while the actors run) and `/readyz` (200 once the broker answers, 503 before
//! and while draining) and `POST /process` (the synchronous API, see
//! [`crate::process_api`]; who may call it: [`crate::process_access`]).

use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::health::Health;
use crate::process_access::{Decision, ProcessAccess};
use crate::process_api::ProcessApi;

/// Whether the pipeline's actors are still running.
pub type Liveness = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct State {
    health: Arc<Health>,
    alive: Liveness,
    metrics: PrometheusHandle,
    process: Arc<ProcessApi>,
    access: Arc<ProcessAccess>,
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

async fn healthz(state: web::Data<State>) -> HttpResponse {
    if (state.alive)() {
        HttpResponse::Ok().body("ok\n")
    } else {
        HttpResponse::ServiceUnavailable().body("pipeline actors stopped\n")
    }
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.health.is_ready() {
        HttpResponse::Ok().body("ready\n")
    } else if state.health.is_draining() {
        HttpResponse::ServiceUnavailable().body("draining\n")
    } else {
        HttpResponse::ServiceUnavailable().body("not connected to Kafka yet\n")
    }
}

async fn process(
    state: web::Data<State>,
    request: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let authorization = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match state.access.check(authorization) {
        Decision::Allowed => {}
        Decision::Disabled => {
            return HttpResponse::NotFound()
                .body("POST /process is turned off (http.process_enabled)\n");
        }
        Decision::Unauthorized => {
            return HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .body("POST /process needs Authorization: Bearer <token>\n");
        }
    }
    if state.health.is_draining() {
        return HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .body("draining\n");
    }
    let answer = state.process.process(&body).await;
    let status = actix_web::http::StatusCode::from_u16(answer.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type("application/json")
        .body(answer.body)
}

/// Binds `listen` and returns the server future (run it with `actix_rt::spawn`).
pub fn server(
    listen: &str,
    health: Arc<Health>,
    alive: Liveness,
    metrics_handle: PrometheusHandle,
    process_api: Arc<ProcessApi>,
    access: ProcessAccess,
) -> std::io::Result<actix_web::dev::Server> {
    let state = State {
        health,
        alive,
        metrics: metrics_handle,
        process: process_api,
        access: Arc::new(access),
    };
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/process", web::post().to(process))
            .app_data(web::PayloadConfig::new(1 << 20))
    })
    .workers(1)
    .disable_signals()
    .bind(listen)?
    .run())
}
