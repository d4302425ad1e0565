//! A GCS-like front that enforces `roles/storage.objectCreator` on one bucket, in
//! front of the real emulator (fake-gcs-server grants everything): an upload that
//! would replace an existing object is refused with 403, as GCS refuses a role that
//! may create but not delete; with `ifGenerationMatch=0` it is 412 instead, as GCS
//! answers a create-only write once the role allows creating. Everything else is
//! passed through as it is.
//!
//! It can also hold the answer to an upload that landed (`hold_next_upload`), so that a
//! test can kill the service exactly between the thumbnail's write and its commit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

#[derive(Default)]
pub struct FrontState {
    /// Uploads refused because the object existed (403 or 412).
    pub refused: AtomicU64,
    /// Uploads of thumbnails (not the service's probe) that reached the emulator.
    pub landed: AtomicU64,
    /// Hold the answer to the next thumbnail upload that lands, for a minute.
    pub hold_next_upload: AtomicBool,
}

pub struct CreatorOnlyFront {
    pub port: u16,
    pub state: Arc<FrontState>,
    handle: actix_web::dev::ServerHandle,
}

struct Shared {
    backend: String,
    bucket: String,
    state: Arc<FrontState>,
    client: reqwest::Client,
}

impl CreatorOnlyFront {
    /// Serves on a free port, passing requests to `backend` (the emulator's URL) and
    /// enforcing create-only writes on `bucket`.
    pub fn start(backend: &str, bucket: &str) -> CreatorOnlyFront {
        let port = super::infra::free_port();
        let state = Arc::new(FrontState::default());
        let shared = web::Data::new(Shared {
            backend: backend.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            state: state.clone(),
            client: reqwest::Client::new(),
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(shared.clone())
                        .app_data(web::PayloadConfig::new(256 << 20))
                        .default_service(web::to(pass))
                })
                .workers(1)
                .bind(("127.0.0.1", port))
                .expect("bind the front")
                .run();
                tx.send(server.handle()).expect("hand the server back");
                let _ = server.await;
            });
        });
        let handle = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the front starts");
        CreatorOnlyFront {
            port,
            state,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for CreatorOnlyFront {
    fn drop(&mut self) {
        // The stop is sent when called; the future only waits for it.
        drop(self.handle.stop(false));
    }
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn gcs_error(code: u16, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).expect("status"))
        .content_type("application/json")
        .body(serde_json::json!({"error": {"code": code, "message": message}}).to_string())
}

async fn pass(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let path = req.path().to_string();
    let query = req.query_string().to_string();
    let upload = req.method() == actix_web::http::Method::POST
        && path == format!("/upload/storage/v1/b/{}/o", shared.bucket);
    let mut thumbnail = false;
    if upload && let Some(name) = query_value(&query, "name") {
        let exists = shared
            .client
            .get(format!(
                "{}/storage/v1/b/{}/o/{name}",
                shared.backend, shared.bucket
            ))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if exists {
            shared.state.refused.fetch_add(1, Ordering::SeqCst);
            return if query_value(&query, "ifGenerationMatch") == Some("0") {
                gcs_error(
                    412,
                    "At least one of the pre-conditions you specified did not hold.",
                )
            } else {
                gcs_error(
                    403,
                    "the caller does not have storage.objects.delete access to the object \
                     (roles/storage.objectCreator)",
                )
            };
        }
        thumbnail = !name.contains("wsi-thumbnail-probe");
    }
    let url = if query.is_empty() {
        format!("{}{path}", shared.backend)
    } else {
        format!("{}{path}?{query}", shared.backend)
    };
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("method");
    let mut forward = shared.client.request(method, url).body(body.to_vec());
    for (name, value) in req.headers() {
        if name.as_str() != "host" && name.as_str() != "content-length" {
            forward = forward.header(name.as_str(), value.as_bytes());
        }
    }
    let Ok(answer) = forward.send().await else {
        return gcs_error(502, "the emulator did not answer");
    };
    let status = answer.status().as_u16();
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"));
    for (name, value) in answer.headers() {
        let name = name.as_str();
        if matches!(name, "content-length" | "transfer-encoding" | "connection") {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).replace(
            &shared.backend,
            &format!("http://{}", req.connection_info().host()),
        );
        response.insert_header((name.to_string(), value));
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    if thumbnail && (200..300).contains(&status) {
        shared.state.landed.fetch_add(1, Ordering::SeqCst);
        if shared.state.hold_next_upload.swap(false, Ordering::SeqCst) {
            // The object is in the bucket; the service has not heard so yet.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
    response.body(bytes.to_vec())
}
