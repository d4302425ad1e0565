//! Defence in depth for worker processes: a memory-corruption bug in a vendor parser
//! (OpenSlide 4.0.1 fixed one reachable from a crafted Ventana BIF) must not give a
//! hostile slide the service's network access, credentials or file system.
//!
//! What a worker may do, and why:
//! - read any file (slides, and the shared libraries OpenSlide loads lazily) and list any
//!   directory (a DICOM link names a series whose instances are listed beside it);
//! - write only below its temporary directory and to `/dev/null` (Landlock);
//! - no network: `socket` is refused for every family but `AF_UNIX` (glibc's name and
//!   log clients use it locally), and `bind`, `listen`, `accept` for everything;
//! - no new programs or privileges: `execve`, `ptrace`, mounts, kernel modules, BPF,
//!   key rings and namespaces are refused, and `no_new_privs` is set (seccomp);
//! - no core dumps and a capped address space (set before `exec`, see `process.rs`).
//!
//! The filter refuses with `EPERM` instead of killing: a library that probes something
//! it does not need then takes its error path. Where the kernel lacks Landlock or
//! seccomp the worker runs without that layer and the service logs one warning.

use std::collections::BTreeMap;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// What holds of the sandbox in one process.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// One line for the logs.
    pub summary: String,
    /// Each layer (`no_new_privs`, `landlock`, `seccomp`) and whether the kernel fully
    /// enforces it, for `wsi_thumbnail_sandbox_enforced{layer}`.
    pub layers: BTreeMap<String, bool>,
}

/// Puts the calling process in the sandbox and says what holds. Call it before any
/// other thread is started: threads inherit it.
pub fn enter(writable_dir: &Path) -> Sandbox {
    let no_new_privs = set_no_new_privs();
    let (files, landlock) = restrict_files(writable_dir);
    let (syscalls, seccomp) = restrict_syscalls();
    Sandbox {
        summary: format!("no_new_privs: {no_new_privs}; files: {files}; syscalls: {syscalls}"),
        layers: [
            ("no_new_privs", no_new_privs == "set"),
            ("landlock", landlock),
            ("seccomp", seccomp),
        ]
        .into_iter()
        .map(|(layer, on)| (layer.to_string(), on))
        .collect(),
    }
}

fn set_no_new_privs() -> &'static str {
    // SAFETY: prctl with integer arguments.
    match unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } {
        0 => "set",
        _ => "not set",
    }
}

/// The summary, and whether Landlock is fully enforced (a partial ruleset on an older
/// kernel ABI counts as not enforced: some of the rules do not hold).
fn restrict_files(writable_dir: &Path) -> (String, bool) {
    let abi = ABI::V3;
    let ruleset = || -> Result<RulesetStatus, Box<dyn std::error::Error>> {
        let mut created = Ruleset::default()
            .handle_access(AccessFs::from_all(abi))?
            .create()?
            .add_rule(PathBeneath::new(
                PathFd::new("/")?,
                AccessFs::from_read(abi),
            ))?;
        for (path, access) in [
            (writable_dir, AccessFs::from_all(abi)),
            (
                Path::new("/dev/null"),
                AccessFs::WriteFile | AccessFs::ReadFile,
            ),
        ] {
            if let Ok(fd) = PathFd::new(path) {
                created = created.add_rule(PathBeneath::new(fd, access))?;
            }
        }
        Ok(created.restrict_self()?.ruleset)
    };
    match ruleset() {
        Ok(RulesetStatus::FullyEnforced) => ("read-only but the temp dir (landlock)".into(), true),
        Ok(RulesetStatus::PartiallyEnforced) => {
            ("partial landlock (older kernel ABI)".into(), false)
        }
        Ok(RulesetStatus::NotEnforced) => {
            ("not restricted (no landlock in this kernel)".into(), false)
        }
        Err(e) => (format!("not restricted (landlock: {e})"), false),
    }
}

fn restrict_syscalls() -> (String, bool) {
    match syscall_filter()
        .and_then(|program| seccompiler::apply_filter(&program).map_err(|e| e.to_string()))
    {
        Ok(()) => ("no network, exec or privilege calls (seccomp)".into(), true),
        Err(e) => (format!("not restricted (seccomp: {e})"), false),
    }
}

/// The refused system calls (see the module doc).
fn syscall_filter() -> Result<BpfProgram, String> {
    let refused_always = [
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = refused_always
        .into_iter()
        .map(|call| (call, Vec::new()))
        .collect();
    let not_unix = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Ne,
        libc::AF_UNIX as u64,
    )
    .map_err(|e| e.to_string())?;
    rules.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![not_unix]).map_err(|e| e.to_string())?],
    );
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_for_this_architecture() {
        assert!(!syscall_filter().unwrap().is_empty());
    }
}
