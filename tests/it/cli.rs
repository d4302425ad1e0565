//! The `wsi-thumbnail thumbnail` command as a user runs it: a child process, its stdout
//! JSON lines, its exit code and its one-line errors, on real and broken files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use wsi_thumbnail::fixtures::{SlideSpec, broken};

use crate::support::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
}

/// Each stdout line as JSON.
fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn thumbnail(slide: &Path, out: &Path) -> Output {
    thumbnail_with(slide, out, &[])
}

/// `wsi-thumbnail thumbnail SLIDE ARGS --output OUT`.
fn thumbnail_with(slide: &Path, out: &Path, args: &[&str]) -> Output {
    bin()
        .args(["thumbnail"])
        .arg(slide)
        .args(args)
        .arg("--output")
        .arg(out)
        .output()
        .expect("run wsi-thumbnail")
}

#[test]
fn one_slide_prints_the_metadata_line_and_writes_the_png() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmu.png");
    let run = thumbnail(&cmu_small_region(), &out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        "{\"width\":2220,\"height\":2967,\"mpp\":0.499,\"objective_power\":20.0,\"vendor\":\"aperio\"}\n"
    );
    let (w, h, _) = decode_png(&std::fs::read(&out).unwrap());
    assert_eq!((w, h), (766, 1024));
}

/// `--png-compression small` (zlib level 6, issue 22) reaches the worker: the same pixels
/// as the default, in at most 90% of the bytes on CMU-1-Small-Region (measured 0.973 MB
/// against 1.123 MB; Pillow's level 6 writes 0.969 MB).
#[test]
fn png_compression_small_writes_the_same_pixels_in_fewer_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    for setting in ["fast", "small"] {
        let out = dir.path().join(format!("{setting}.png"));
        let run = thumbnail_with(&cmu_small_region(), &out, &["--png-compression", setting]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        written.push(std::fs::read(&out).unwrap());
    }
    let (fast, small) = (&written[0], &written[1]);
    assert_eq!(decode_png(fast), decode_png(small), "lossless either way");
    assert!(
        small.len() * 10 <= fast.len() * 9,
        "small {} bytes against fast {}",
        small.len(),
        fast.len()
    );
}

#[test]
fn size_flag_sets_the_longest_side() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small.png");
    let run = thumbnail_with(&cmu_small_region(), &out, &["--size", "300"]);
    assert!(run.status.success());
    let (w, h, _) = decode_png(&std::fs::read(&out).unwrap());
    assert_eq!((w, h), (224, 300));
}

#[test]
fn many_slides_write_one_json_line_each_into_the_out_dir() {
    let dir = tempfile::tempdir().unwrap();
    let generated = fixture(&SlideSpec::aperio(6000, 4000, 4));
    let run = bin()
        .args(["thumbnail"])
        .arg(cmu_small_region())
        .arg(&generated)
        .arg("--out-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines = json_lines(&run.stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["width"], 2220);
    assert_eq!(lines[0]["vendor"], "aperio");
    assert_eq!(lines[1]["width"], 6000);
    assert_eq!(lines[1]["height"], 4000);
    for line in &lines {
        let png = PathBuf::from(line["thumbnail"].as_str().unwrap());
        assert!(png.starts_with(dir.path()));
        assert!(png.to_string_lossy().ends_with("_thumbnail.png"));
        let (w, h, _) = decode_png(&std::fs::read(&png).unwrap());
        assert_eq!(w.max(h), 1024);
    }
}

/// Runs the CLI on a broken file and checks the failure contract: non-zero exit, one
/// line on stderr naming the kind, nothing on stdout, no panic, no output file.
fn assert_fails_with(slide: &Path, kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let run = thumbnail(slide, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{} succeeded", slide.display());
    assert_eq!(run.status.code(), Some(1), "{}: {stderr}", slide.display());
    assert_eq!(
        stderr.lines().count(),
        1,
        "{}: not one line: {stderr}",
        slide.display()
    );
    assert!(
        stderr.starts_with(&format!("error: {kind}: ")),
        "{}: expected {kind}, got: {stderr}",
        slide.display()
    );
    assert!(!stderr.contains("panicked"));
    assert!(run.stdout.is_empty());
    assert!(!out.exists());
}

#[test]
fn broken_files_fail_with_the_right_kind_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    broken::write_empty(&d.join("empty.svs")).unwrap();
    assert_fails_with(&d.join("empty.svs"), "corrupt_slide");

    broken::write_random(&d.join("random.svs"), 100_000, 7).unwrap();
    assert_fails_with(&d.join("random.svs"), "unsupported_format");

    std::fs::write(d.join("notes.tif"), "this is a text file, not a slide\n").unwrap();
    assert_fails_with(&d.join("notes.tif"), "unsupported_format");

    // A PNG is an image, but not a slide.
    assert_fails_with(&cmu_reference_png(), "unsupported_format");

    broken::write_bomb(&d.join("bomb.tif"), u32::MAX, u32::MAX).unwrap();
    assert_fails_with(&d.join("bomb.tif"), "slide_too_large");

    assert_fails_with(&d.join("missing.svs"), "slide_not_found");
}

#[test]
fn truncated_slides_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // CMU-1-Small-Region keeps its first directory up front: the cut lands in tile data.
    broken::write_truncated(&cmu_small_region(), &d.join("cmu-cut.svs"), 200_000).unwrap();
    assert_fails_with(&d.join("cmu-cut.svs"), "corrupt_slide");
    // Generated slides keep directories at the end: the cut loses all of them.
    let generated = fixture(&SlideSpec::aperio(6000, 4000, 4));
    broken::write_truncated(&generated, &d.join("gen-cut.svs"), 300_000).unwrap();
    assert_fails_with(&d.join("gen-cut.svs"), "corrupt_slide");
}

#[test]
fn a_configurable_bound_refuses_large_but_plausible_slides() {
    let dir = tempfile::tempdir().unwrap();
    let run = bin()
        .args(["thumbnail"])
        .arg(cmu_small_region())
        .args(["--max-slide-pixels", "1000000", "--output"])
        .arg(dir.path().join("x.png"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.starts_with("error: slide_too_large: "), "{stderr}");
    assert!(
        stderr.contains("max_slide_pixels"),
        "the message says what to change: {stderr}"
    );
}

/// A poison slide costs the CLI one worker process and one error line: the batch goes
/// on, every slide gets its JSON line, and the exit code says some failed.
#[test]
fn out_dir_over_good_and_poison_slides_prints_a_line_each_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let slides_dir = dir.path().join("in");
    std::fs::create_dir(&slides_dir).unwrap();
    let corpus = wsi_thumbnail::fixtures::poison::write_corpus(&slides_dir).unwrap();
    let mut slides = vec![cmu_small_region()];
    slides.extend(corpus.iter().map(|p| slides_dir.join(p.file_name)));
    slides.push(shared_poison());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let run = bin()
        .args([
            "thumbnail",
            "--worker-memory-mb",
            "1024",
            "--timeout-ms",
            "20000",
            "--out-dir",
        ])
        .arg(&out_dir)
        .args(&slides)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines = json_lines(&run.stdout);
    assert_eq!(lines.len(), slides.len(), "one JSON line per slide");
    assert_eq!(lines[0]["width"], 2220, "{}", lines[0]);
    for (line, poison) in lines[1..].iter().zip(&corpus) {
        assert_eq!(
            line["error"]["kind"],
            poison.kind.as_str(),
            "{}: {line}",
            poison.file_name
        );
    }
    let last = &lines[slides.len() - 1];
    assert_eq!(last["error"]["kind"], "corrupt_slide", "{last}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SIGFPE"),
        "{last}"
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!(
            "{} of {} slides failed",
            slides.len() - 1,
            slides.len()
        )),
        "{stderr}"
    );
}

#[test]
fn version_names_the_service_and_every_slide_library_one_per_line() {
    let run = bin().arg("--version").output().expect("run wsi-thumbnail");
    assert!(run.status.success());
    let text = String::from_utf8(run.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("wsi-thumbnail {}", env!("CARGO_PKG_VERSION"))
    );
    for (line, name) in lines[1..].iter().zip([
        "OpenSlide ",
        "libjpeg-turbo ",
        "hayro-jpeg2000 ",
        "CharLS ",
        "OpenJPEG ",
        "OpenJPEG ",
        "libtiff ",
        "libdicom ",
    ]) {
        let version = line
            .strip_prefix(name)
            .unwrap_or_else(|| panic!("{line:?} names {name}"));
        assert!(
            version.starts_with(|c: char| c.is_ascii_digit()),
            "{line:?}: a version number"
        );
    }
    assert_eq!(lines.len(), 9, "{text}");
    // OpenSlide is the openslide-bin 4.x release, not a distribution's 3.4.1.
    assert!(
        lines[1].starts_with("OpenSlide 4.") && lines[1].contains("openslide-bin"),
        "{text}"
    );
    assert!(
        lines[5].contains("built in: HTJ2K") && lines[6].contains("inside OpenSlide"),
        "{text}"
    );
}

/// An output is prepared before its slide is read (`cli::output_file`): a path that
/// cannot be written fails at once, a slide that fails leaves no file (not the older one,
/// not an empty one), and an output that is one of the slides is refused untouched.
#[test]
fn outputs_are_made_before_their_slides_are_read_and_hold_a_thumbnail_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A slide whose worker waits in `open` until its deadline: nobody writes the FIFO.
    let fifo = dir.path().join("waits.svs");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let run = thumbnail_with(
        &fifo,
        &dir.path().join("missing/out.png"),
        &["--timeout-ms", "30000"],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot write ") && stderr.contains("missing/out.png"),
        "the output's error, not the slide's: {stderr}"
    );

    let older = dir.path().join("older.png");
    std::fs::write(&older, b"an older thumbnail").unwrap();
    let not_a_slide = dir.path().join("notes.svs");
    std::fs::write(&not_a_slide, b"not a slide at all").unwrap();
    let run = thumbnail(&not_a_slide, &older);
    assert_eq!(run.status.code(), Some(1));
    assert!(!older.exists(), "a failed slide left a file at its output");
    // The same in a batch, and no temporary file is left behind either.
    let batch = dir.path().join("batch");
    std::fs::create_dir(&batch).unwrap();
    std::fs::write(batch.join("notes_thumbnail.png"), b"an older thumbnail").unwrap();
    let run = bin()
        .args(["thumbnail", "--out-dir"])
        .arg(&batch)
        .arg(&not_a_slide)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        std::fs::read_dir(&batch).unwrap().count(),
        0,
        "a failed slide of a batch left a file"
    );

    let run = thumbnail(&not_a_slide, &dir.path().join(".").join("notes.svs"));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.starts_with("error: the output ") && stderr.contains("is one of the slides"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&not_a_slide).unwrap(), b"not a slide at all");
    // In a batch: `notes.svs` would write `notes_thumbnail.png`, another slide here.
    let clash = dir.path().join("notes_thumbnail.png");
    std::fs::write(&clash, b"a slide named like a thumbnail").unwrap();
    let run = bin()
        .args(["thumbnail", "--out-dir"])
        .arg(dir.path())
        .args([&not_a_slide, &clash])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("is one of the slides"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read(&clash).unwrap(),
        b"a slide named like a thumbnail"
    );
}

/// The CLI forks its zygote from itself (a process start less per run), so what an
/// exec'd zygote is given by construction must be made true in memory: none of the
/// CLI's environment (not even its bytes, which `/proc/PID/environ` and the worker's
/// own memory show), none of its descriptors, the limits, and death with the CLI.
#[test]
fn a_cli_worker_holds_nothing_of_the_cli_keeps_its_limits_and_dies_with_it() {
    use std::os::fd::AsRawFd;
    use std::process::Stdio;
    use wsi_thumbnail::worker::process::PASSED_ENV;
    let dir = tempfile::tempdir().unwrap();
    // A slide that blocks its worker in `open` until a writer comes: none does.
    let fifo = dir.path().join("waits.svs");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // A descriptor without close-on-exec, which the CLI inherits from this test.
    let leaked = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).unwrap();
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
    unsafe { libc::fcntl(leaked.as_raw_fd(), libc::F_SETFD, 0) };
    let secret = "s3cr3t-token-value";
    let mut cli = bin()
        .args(["thumbnail", "--worker-memory-mb", "1024", "--output"])
        .arg(dir.path().join("out.png"))
        .arg(&fifo)
        .env("WSI_TEST_SECRET_TOKEN", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(leaked);
    let cli_pid = cli.id() as i32;
    let mut found = (0, 0);
    assert!(
        eventually(Duration::from_secs(20), || {
            let zygotes = process_tree::children(cli_pid);
            let workers = process_tree::workers(cli_pid);
            if let ([zygote], [worker, ..]) = (&zygotes[..], &workers[..]) {
                found = (*zygote, *worker);
            }
            found.1 != 0
        }),
        "the CLI started no zygote and worker"
    );
    let (zygote, worker) = found;
    // A fork keeps the CLI's arguments; an exec'd zygote's are `wsi-thumbnail worker ...`.
    let cmdline = |pid: i32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(
        cmdline(zygote),
        cmdline(cli_pid),
        "the zygote is a fork of the CLI, not an exec'd `worker`: {}",
        String::from_utf8_lossy(&cmdline(zygote))
    );
    let cli_stdout = std::fs::read_link(format!("/proc/{cli_pid}/fd/1")).unwrap();
    let leaked_target = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
    for pid in [zygote, worker] {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            !environ
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "process {pid} still holds the CLI's secret in its environment block"
        );
        let names: Vec<String> = environ
            .split(|b| *b == 0)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let name = entry.split(|b| *b == b'=').next().unwrap_or_default();
                String::from_utf8_lossy(name).into_owned()
            })
            .collect();
        assert!(
            names.iter().all(|n| PASSED_ENV.contains(&n.as_str())),
            "process {pid}: {names:?}"
        );
        let fds: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let target = std::fs::read_link(e.path()).ok()?;
                Some((e.file_name().to_string_lossy().into_owned(), target))
            })
            .collect();
        let target = |fd: &str| fds.iter().find(|(n, _)| n == fd).map(|(_, t)| t.clone());
        assert!(
            fds.iter().all(|(_, t)| *t != leaked_target),
            "a descriptor of the CLI reached process {pid}: {fds:?}"
        );
        assert_eq!(target("0"), Some("/dev/null".into()), "{pid}: {fds:?}");
        assert_ne!(
            target("1"),
            Some(cli_stdout.clone()),
            "process {pid} can write into the CLI's JSON lines: {fds:?}"
        );
        process_tree::assert_worker_limits(pid, 1024);
    }
    // The CLI killed outright while its zygote is stopped (so it cannot act on its
    // control socket's end): the death signal alone takes the zygote, and the zygote's
    // takes the worker.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygote),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    cli.kill().unwrap();
    cli.wait().unwrap();
    let gone = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or_default()
                .trim()
                .starts_with('Z')
        })
    };
    let died = eventually(Duration::from_secs(10), || gone(zygote) && gone(worker));
    if !died {
        for pid in [zygote, worker] {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    assert!(died, "the zygote or its worker outlived the CLI");
}
