//! Bounded memory on a single-level 30000 x 30000 slide: the CLI runs as a child process
//! and its peak resident set size is read from the kernel's accounting (`wait4`'s
//! `ru_maxrss`), which covers the whole life of that one process. And the worker caps
//! the kit ships (`thumbnail.worker_memory_mb`: 768 on GKE, 640 on Cloud Run) serve
//! every class of slide, real and generated, through both pixel paths.

use std::path::Path;
use std::process::Command;

use wsi_thumbnail::fixtures::SlideSpec;

use crate::support::*;

const LIMIT_MIB: i64 = 300;

/// Runs the command to completion and returns (exit code, peak RSS in MiB).
fn run_measuring_peak_rss(cmd: &mut Command) -> (i32, i64) {
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter; the pid is our own child, reaped
    // here exactly once (the Child handle is forgotten, so std never waits on it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    std::mem::forget(child);
    assert_eq!(reaped, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss / 1024)
}

fn check(decoder: &str) {
    let slide = fixture(&SlideSpec::generic_single_level(30000, 30000));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.png");
    let (code, peak) = run_measuring_peak_rss(
        Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
            .arg("thumbnail")
            .arg(&slide)
            .args(["--decoder", decoder, "--output"])
            .arg(&out),
    );
    println!("{decoder}: peak RSS {peak} MiB");
    assert_eq!(code, 0);
    let (w, h, _) = decode_png(&std::fs::read(&out).unwrap());
    assert_eq!((w, h), (1024, 1024));
    assert!(peak < LIMIT_MIB, "{decoder}: peak RSS {peak} MiB");
}

#[test]
fn single_level_30000_square_stays_under_300_mib_with_direct_decoding() {
    check("auto");
}

#[test]
fn single_level_30000_square_stays_under_300_mib_through_openslide() {
    check("openslide");
}

/// The floor `thumbnail.worker_memory_mb` accepts. An address-space cap only ever
/// refuses more as it shrinks, so a slide decoded under the floor is decoded under every
/// larger cap.
const FLOOR_MIB: u64 = 256;

/// The `worker_memory_mb = N` values a kit file sets.
fn kit_caps(path: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("worker_memory_mb"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn the_kits_worker_memory_caps_serve_every_class_of_slide() {
    // The caps the kit ships (GKE 768, Cloud Run 640) are at least the floor...
    for path in [
        "deploy/k8s/base/configmap.yaml",
        "deploy/cloud-run/README.md",
    ] {
        let caps = kit_caps(path);
        assert!(!caps.is_empty(), "{path} sets worker_memory_mb");
        assert!(caps.iter().all(|&c| c >= FLOOR_MIB), "{path}: {caps:?}");
    }
    // ...and every class of slide, real and generated, decodes under the floor.
    let slides = [
        cmu_small_region(),
        testdata().join("ndpi/fluorescence-DAPI.ndpi"),
        testdata().join("dicom/CMU-1-Small-Region/level-0-frames-0-30.dcm"),
        fixture(&SlideSpec::aperio(40000, 30000, 4)),
        fixture(&SlideSpec::generic_single_level(30000, 30000)),
    ];
    let dir = tempfile::tempdir().unwrap();
    for slide in &slides {
        for decoder in ["auto", "openslide"] {
            let out = dir.path().join("t.png");
            let _ = std::fs::remove_file(&out);
            let run = Command::new(env!("CARGO_BIN_EXE_wsi-thumbnail"))
                .arg("thumbnail")
                .arg(slide)
                .args(["--isolation", "process", "--decoder", decoder])
                .args(["--worker-memory-mb", &FLOOR_MIB.to_string(), "--output"])
                .arg(&out)
                .output()
                .expect("run the CLI");
            let name = slide.file_name().unwrap().to_string_lossy();
            assert!(
                run.status.success(),
                "{name} under {FLOOR_MIB} MiB ({decoder}): {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let (w, h, _) = decode_png(&std::fs::read(&out).unwrap());
            assert!(w.max(h) > 0 && w.max(h) <= 1024, "{name}: {w} x {h}");
        }
    }
}
