//! The service under test, as a child process: `wsi-thumbnail serve --config FILE`.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Service {
    pub child: Option<Child>,
}

impl Service {
    pub fn start(config: &Path, env: &[(&str, String)]) -> Service {
        Service::spawn(config, env, Stdio::inherit())
    }

    /// Like `start`, with the service's log (stderr) written to `log` for inspection.
    pub fn start_logged(config: &Path, env: &[(&str, String)], log: &Path) -> Service {
        let file = std::fs::File::create(log).expect("create the log file");
        Service::spawn(config, env, Stdio::from(file))
    }

    /// Like `start_logged`, with the service's address space capped at `bytes`
    /// (`RLIMIT_AS`, as a container limit or `ulimit -v` would).
    pub fn start_capped(config: &Path, env: &[(&str, String)], log: &Path, bytes: u64) -> Service {
        let file = std::fs::File::create(log).expect("create the log file");
        Service::spawn_with(config, env, Stdio::from(file), Some(bytes))
    }

    fn spawn(config: &Path, env: &[(&str, String)], stderr: Stdio) -> Service {
        Service::spawn_with(config, env, stderr, None)
    }

    fn spawn_with(
        config: &Path,
        env: &[(&str, String)],
        stderr: Stdio,
        address_space: Option<u64>,
    ) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"));
        if let Some(bytes) = address_space {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit (async-signal-safe) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: bytes as libc::rlim_t,
                        rlim_max: bytes as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("serve").arg("--config").arg(config);
        // An empty value removes the variable from the child's environment.
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn,wsi_thumbnail=info");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start service");
        Service { child: Some(child) }
    }

    /// Whether the process is still running (not exited, not reaped).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Sends SIGTERM and waits for the exit (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("service did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
