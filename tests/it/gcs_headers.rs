//! The production way of learning an object's size and generation: real GCS sends
//! `x-goog-stored-content-length` and `x-goog-generation` on every media read, and
//! fake-gcs-server sends neither (so other tests take an emulator-only lookup). Here a
//! small HTTP front for the emulator answers like GCS: it adds both headers to media
//! reads and hides the JSON metadata route, so a ranged fetch can only work if the
//! headers are parsed and the generation is pinned from them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use wsi_thumbnail::fixtures::SlideSpec;

use crate::support::infra::{Broker, Gcs, ensure_topics, free_port, metric, service_config};
use crate::support::request::Request;
use crate::support::service::Service;
use crate::support::*;

#[derive(Default)]
struct Seen {
    media_queries: Vec<String>,
    hidden_metadata_hits: usize,
}

/// Reads an HTTP head (request or response) up to the blank line.
fn read_head(stream: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The object's generation, from the emulator's own metadata route.
fn generation_of(upstream: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let json: Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| panic!("{text}"));
    json["generation"].as_str().unwrap().to_string()
}

fn serve_one(client: TcpStream, upstream: u16, seen: &Mutex<Seen>) -> Option<()> {
    let mut reader = BufReader::new(client.try_clone().ok()?);
    let head = read_head(&mut reader)?;
    let mut parts = head[0].split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let media = query.split('&').any(|kv| kv == "alt=media");
    let object_route = path.starts_with("/storage/v1/b/") && path.contains("/o/");
    let mut client = client;
    if method == "GET" && object_route && !media {
        seen.lock().unwrap().hidden_metadata_hits += 1;
        let _ = client
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return Some(());
    }
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    let mut request = String::new();
    for line in &head {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            request.push_str(line);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    up.write_all(request.as_bytes()).ok()?;
    up.write_all(&body).ok()?;
    let mut up_reader = BufReader::new(up);
    let response = read_head(&mut up_reader)?;
    let mut out = String::new();
    for line in &response {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    let status_ok = response[0].contains(" 200 ") || response[0].contains(" 206 ");
    if media && status_ok {
        seen.lock().unwrap().media_queries.push(query.to_string());
        let total = header(&response, "content-range")
            .and_then(|r| r.rsplit('/').next())
            .map(str::to_string)
            .or_else(|| header(&response, "content-length").map(str::to_string))?;
        out.push_str(&format!("x-goog-stored-content-length: {total}\r\n"));
        out.push_str(&format!(
            "x-goog-generation: {}\r\n",
            generation_of(upstream, path)
        ));
    }
    out.push_str("Connection: close\r\n\r\n");
    client.write_all(out.as_bytes()).ok()?;
    std::io::copy(&mut up_reader, &mut client).ok()?;
    Some(())
}

/// The GCS-like front: returns its port.
fn front(upstream: u16, seen: Arc<Mutex<Seen>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || serve_one(client, upstream, &seen));
        }
    });
    port
}

#[test]
fn size_and_generation_come_from_the_read_headers_as_on_real_gcs() {
    let slide = fixture(&SlideSpec::aperio(40000, 30000, 4));
    let size = std::fs::metadata(&slide).unwrap().len();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gcs");
    std::fs::create_dir_all(data.join("slides-in")).unwrap();
    std::fs::copy(&slide, data.join("slides-in/pyramid.svs")).unwrap();
    let gcs = Gcs::start(&data);
    let upstream: u16 = gcs.url().rsplit(':').next().unwrap().parse().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let front_port = front(upstream, seen.clone());
    let broker = Broker::start();
    let http_port = free_port();
    let out = dir.path().join("out");
    let config = service_config(
        dir.path(),
        &broker.bootstrap(),
        http_port,
        &format!(
            "[storage]\noutput = \"file://{}/\"\nfetch = \"ranged\"\n",
            out.display()
        ),
    );
    ensure_topics(&config);
    let _service = Service::start(
        &config,
        &[(
            "STORAGE_EMULATOR_HOST",
            format!("http://127.0.0.1:{front_port}"),
        )],
    );
    assert!(becomes_ready(http_port));
    let body = Request::new("gcs-1")
        .slide("pyramid")
        .link("gs://slides-in/pyramid.svs")
        .bytes();
    let (status, text) = http_post(http_port, "/process", &body).expect("POST /process");
    assert_eq!(status, 200, "{text}");
    let (_, metrics) = http_get(http_port, "/metrics").unwrap();
    assert_eq!(
        metric(&metrics, "wsi_thumbnail_fetch_path_total{path=\"ranged\"}"),
        Some(1.0)
    );
    let fetched = metric(&metrics, "wsi_thumbnail_slide_bytes_fetched_total").unwrap();
    assert!(
        fetched > 0.0 && fetched <= 0.03 * size as f64,
        "{fetched} of {size}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.hidden_metadata_hits, 0,
        "the emulator-only size lookup was used: the headers were not"
    );
    let generation = generation_of(upstream, "/storage/v1/b/slides-in/o/pyramid.svs");
    assert!(seen.media_queries.len() > 1, "{:?}", seen.media_queries);
    assert!(
        seen.media_queries[1..]
            .iter()
            .all(|q| q.contains(&format!("generation={generation}"))),
        "later reads are pinned to the generation the first read reported: {:?}",
        seen.media_queries
    );
}
