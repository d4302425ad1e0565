//! Bounded memory on a single-level 30000 x 30000 slide: the CLI runs as a child process
//! and its peak resident set size is read from the kernel's accounting (`wait4`'s
//! `ru_maxrss`), which covers the whole life of that one process.

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
