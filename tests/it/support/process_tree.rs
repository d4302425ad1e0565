//! A process and its descendants, read from /proc: the service's worker processes and
//! the whole tree's resident memory.

/// The direct children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// A service's worker processes: the children of its zygote (the service's children).
pub fn workers(service: i32) -> Vec<i32> {
    children(service).into_iter().flat_map(children).collect()
}

/// `pid` and every process below it.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let more = children(all[i]);
        all.extend(more);
        i += 1;
    }
    all
}

/// Resident bytes of one process (0 once it is gone).
pub fn rss_bytes(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Resident bytes of `pid` and all its descendants, summed.
pub fn tree_rss_bytes(pid: i32) -> u64 {
    tree(pid).into_iter().map(rss_bytes).sum()
}

/// CPU time (user + system, in clock ticks) a process has used so far.
pub fn cpu_ticks(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) in parentheses.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Asserts a worker process's limits: an address space of `memory_mib` MiB, no core
/// dumps, and the decoding stack its main thread may grow to.
pub fn assert_worker_limits(pid: i32, memory_mib: u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = |name: &str| limits.lines().find(|l| l.starts_with(name)).unwrap();
    assert!(
        line("Max address space").contains(&(memory_mib << 20).to_string()),
        "{pid}: {limits}"
    );
    assert!(
        line("Max core file size")
            .split_whitespace()
            .any(|w| w == "0"),
        "{pid}: {limits}"
    );
    let stack = wsi_thumbnail::worker::child::DECODE_STACK_BYTES.to_string();
    assert!(
        line("Max stack size")
            .split_whitespace()
            .any(|w| w == stack),
        "{pid}: {limits}"
    );
}
