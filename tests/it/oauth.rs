//! Kafka SASL/OAUTHBEARER with tokens from Google credentials, tested as far as it can be
//! without a real GCP cluster: a local stand-in for the metadata server
//! (`GCE_METADATA_HOST`, as on GKE, Cloud Run and GCE) hands out the service account's
//! email and an access token, and a local listener in place of the broker answers the
//! SASL handshake and records what the client authenticates with. The service must
//! fetch both from the stand-in and put the token Google's Managed Kafka expects into
//! the handshake.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::support::infra::free_port;
use crate::support::service::Service;
use crate::support::*;

const EMAIL: &str = "wsi-thumbnail@test-project.iam.gserviceaccount.com";
const ACCESS_TOKEN: &str = "ya29.local-stand-in-token";

type Log = Arc<Mutex<Vec<String>>>;

/// Serves the two metadata paths the service needs, recording each request's path and
/// whether it carried `Metadata-Flavor: Google`, listening only after `delay` (a GKE node's metadata server answers a few
/// seconds after a new pod starts; connections are refused until then).
fn metadata_server_after(log: Log, delay: Duration) -> u16 {
    let port = free_port();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || answer_metadata(stream, &log));
        }
    });
    port
}

fn answer_metadata(stream: TcpStream, log: &Log) {
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let Some(path) = head.first().and_then(|l| l.split_whitespace().nth(1)) else {
        return;
    };
    let flavor = head
        .iter()
        .any(|h| h.eq_ignore_ascii_case("metadata-flavor: google"));
    log.lock().unwrap().push(format!("{path} flavor={flavor}"));
    let base = "/computeMetadata/v1/instance/service-accounts/default";
    let (status, body) = if !flavor {
        ("403 Forbidden", String::new())
    } else if path == format!("{base}/email") {
        ("200 OK", EMAIL.to_string())
    } else if path.starts_with(&format!("{base}/token")) {
        (
            "200 OK",
            serde_json::json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
                .to_string(),
        )
    } else {
        ("404 Not Found", String::new())
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nMetadata-Flavor: Google\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// In place of the broker: answers ApiVersions and SaslHandshake with OAUTHBEARER, and
/// records the client's SaslAuthenticate request, which carries the token.
fn sasl_listener(seen: Log) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let _ = answer_sasl(stream, &seen);
            });
        }
    });
    port
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut frame = vec![0; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame)?;
    Ok(frame)
}

fn reply(stream: &mut TcpStream, correlation: &[u8], body: &[u8]) -> std::io::Result<()> {
    stream.write_all(&((correlation.len() + body.len()) as u32).to_be_bytes())?;
    stream.write_all(correlation)?;
    stream.write_all(body)
}

/// ApiVersions v0 response: an error code and (api key, min, max) triples.
fn api_versions(error: i16, apis: &[(i16, i16, i16)]) -> Vec<u8> {
    let mut body = error.to_be_bytes().to_vec();
    body.extend_from_slice(&(apis.len() as i32).to_be_bytes());
    for (key, min, max) in apis {
        for v in [key, min, max] {
            body.extend_from_slice(&v.to_be_bytes());
        }
    }
    body
}

fn answer_sasl(mut stream: TcpStream, seen: &Log) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    loop {
        let request = read_frame(&mut stream)?;
        let api_key = i16::from_be_bytes([request[0], request[1]]);
        let version = i16::from_be_bytes([request[2], request[3]]);
        let correlation = request[4..8].to_vec();
        match api_key {
            // ApiVersions: refuse the flexible versions (the client retries v0, as
            // KIP-511 has it), then list what a broker that takes SASL offers.
            18 if version > 0 => {
                reply(&mut stream, &correlation, &api_versions(35, &[(18, 0, 0)]))?
            }
            18 => reply(
                &mut stream,
                &correlation,
                &api_versions(
                    0,
                    &[
                        (0, 0, 7),
                        (1, 0, 11),
                        (2, 0, 5),
                        (3, 0, 9),
                        (8, 0, 7),
                        (9, 0, 7),
                        (10, 0, 3),
                        (11, 0, 5),
                        (12, 0, 3),
                        (13, 0, 3),
                        (14, 0, 3),
                        (17, 0, 1),
                        (18, 0, 0),
                        (22, 0, 4),
                        (36, 0, 0),
                    ],
                ),
            )?,
            // SaslHandshake: OAUTHBEARER is the one mechanism.
            17 => {
                let mechanism = b"OAUTHBEARER";
                let mut body = 0i16.to_be_bytes().to_vec();
                body.extend_from_slice(&1i32.to_be_bytes());
                body.extend_from_slice(&(mechanism.len() as i16).to_be_bytes());
                body.extend_from_slice(mechanism);
                reply(&mut stream, &correlation, &body)?;
            }
            // SaslAuthenticate: the client's first message, with the token.
            36 => {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                return Ok(());
            }
            other => panic!("unexpected request {other} before authentication"),
        }
    }
}

#[test]
fn google_tokens_reach_the_sasl_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let metadata_log: Log = Arc::default();
    let handshakes: Log = Arc::default();
    // Late by 4 s: the service waits for it rather than exiting at start.
    let metadata_port = metadata_server_after(metadata_log.clone(), Duration::from_secs(4));
    let broker_port = sasl_listener(handshakes.clone());
    let client = "\"security.protocol\" = \"SASL_PLAINTEXT\"\n";
    let config = dir.path().join("oauth.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:{broker_port}\"\noauth = \"google\"\n\
             [kafka.consumer]\n{client}[kafka.producer]\n{client}\
             [storage]\noutput = \"file://{}/out/\"\nallow_file_inputs = true\n\
             [http]\nlisten = \"127.0.0.1:{}\"\n",
            dir.path().display(),
            free_port()
        ),
    )
    .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut service = Service::start(
        &config,
        &[
            ("GCE_METADATA_HOST", format!("127.0.0.1:{metadata_port}")),
            ("HOME", home.display().to_string()),
            ("GOOGLE_APPLICATION_CREDENTIALS", String::new()),
        ],
    );
    let got_token = eventually(Duration::from_secs(60), || {
        !handshakes.lock().unwrap().is_empty()
    });
    drop(service.child.take().map(|mut c| c.kill()));
    let requests = metadata_log.lock().unwrap().clone();
    assert!(
        got_token,
        "no SASL message reached the broker; metadata requests: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("/default/email flavor=true")),
        "the principal comes from the metadata server: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/default/token") && r.ends_with("flavor=true")),
        "the access token comes from the metadata server: {requests:?}"
    );

    // "n,,\x01auth=Bearer <token>\x01\x01" (RFC 7628), the token in Google's shape.
    let message = handshakes.lock().unwrap()[0].clone();
    let token = message
        .split('\u{1}')
        .find_map(|kv| kv.strip_prefix("auth=Bearer "))
        .unwrap_or_else(|| panic!("no bearer token in {message:?}"));
    let parts: Vec<Vec<u8>> = token
        .split('.')
        .map(|p| URL_SAFE_NO_PAD.decode(p).expect("base64url"))
        .collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&parts[0]).unwrap();
    let claims: Value = serde_json::from_slice(&parts[1]).unwrap();
    assert_eq!(header["alg"], "GOOG_OAUTH2_TOKEN");
    assert_eq!(claims["sub"], EMAIL);
    assert_eq!(claims["iss"], "Google");
    assert!(claims["exp"].as_u64() > claims["iat"].as_u64());
    assert_eq!(parts[2], ACCESS_TOKEN.as_bytes(), "the access token itself");
}

/// No usable Google credentials (no key file, a metadata server that does not answer
/// for 30 s): the service says what it tried in one line and exits non-zero, without a
/// panic, instead of crash-looping with no hint.
#[test]
fn missing_google_credentials_are_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    let config = dir.path().join("oauth.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:{}\"\noauth = \"google\"\n\
             [storage]\noutput = \"file://{}/out/\"\nallow_file_inputs = true\n\
             [http]\nlisten = \"127.0.0.1:{}\"\n",
            free_port(),
            dir.path().display(),
            free_port()
        ),
    )
    .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let log = dir.path().join("serve.log");
    let started = std::time::Instant::now();
    let mut service = Service::start_logged(
        &config,
        &[
            ("GCE_METADATA_HOST", format!("127.0.0.1:{closed}")),
            ("HOME", home.display().to_string()),
            ("GOOGLE_APPLICATION_CREDENTIALS", String::new()),
        ],
        &log,
    );
    let status = loop {
        if let Some(status) = service.child.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        // It waits up to 30 s for the metadata server, then gives up.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still running after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{stderr}");
    assert_ne!(status.code(), Some(101), "a panic: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(error.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{error}");
    assert!(
        error.contains(&format!("127.0.0.1:{closed}")),
        "names the metadata server: {error}"
    );
}
