//! The HTTP side of the service (actix-web): `/metrics` (Prometheus text), `/healthz`
//! (200 while the actors run) and `/readyz` (200 once the broker answers, 503 before
//! and while draining).

use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::health::Health;

/// Whether the pipeline's actors are still running.
pub type Liveness = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct State {
    health: Arc<Health>,
    alive: Liveness,
    metrics: PrometheusHandle,
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

/// Binds `listen` and returns the server future (run it with `actix_rt::spawn`).
pub fn server(
    listen: &str,
    health: Arc<Health>,
    alive: Liveness,
    metrics_handle: PrometheusHandle,
) -> std::io::Result<actix_web::dev::Server> {
    let state = State {
        health,
        alive,
        metrics: metrics_handle,
    };
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
    })
    .workers(1)
    .disable_signals()
    .bind(listen)?
    .run())
}
