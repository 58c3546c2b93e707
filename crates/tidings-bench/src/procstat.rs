//! Server cost read from /proc: CPU time and resident memory of a process tree.

use std::collections::HashSet;
use std::fs;

/// Clock ticks per second used by /proc/PID/stat (USER_HZ; 100 on every Linux we run on).
const TICKS_PER_SEC: f64 = 100.0;

/// The pids of `roots` and all their descendants that are alive now.
pub(crate) fn tree(roots: &[u32]) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(fields) = stat_fields(pid) {
                // Field 4 (index 1 after the comm split) is the ppid.
                if let Some(ppid) = fields.get(1).and_then(|s| s.parse::<u32>().ok()) {
                    parent_of.push((pid, ppid));
                }
            }
        }
    }
    let mut set: HashSet<u32> = roots
        .iter()
        .copied()
        .filter(|p| fs::metadata(format!("/proc/{p}")).is_ok())
        .collect();
    loop {
        let before = set.len();
        for &(pid, ppid) in &parent_of {
            if set.contains(&ppid) {
                set.insert(pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    let mut v: Vec<u32> = set.into_iter().collect();
    v.sort_unstable();
    v
}

/// Fields of /proc/PID/stat after the `(comm)` field: index 0 is the state.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    Some(
        text[close + 1..]
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// utime+stime of one process (all its threads), in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Some(f) = stat_fields(pid) else {
        return 0.0;
    };
    // utime is field 14, stime 15; after the comm split state is index 0 (field 3).
    let ut: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    (ut + st) / TICKS_PER_SEC
}

/// Summed CPU seconds of the tree under `roots`.
pub(crate) fn tree_cpu_seconds(roots: &[u32]) -> f64 {
    tree(roots).into_iter().map(cpu_seconds).sum()
}

/// VmRSS of one process in bytes.
pub(crate) fn rss_bytes(pid: u32) -> u64 {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Summed VmRSS of the tree under `roots`.
pub(crate) fn tree_rss_bytes(roots: &[u32]) -> u64 {
    tree(roots).into_iter().map(rss_bytes).sum()
}

/// CPU seconds of this (generator) process.
pub(crate) fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// A short description of the machine: CPU model, core count, memory, kernel.
pub(crate) fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_kb = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|k| k.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {:.1} GiB RAM, Linux {}",
        mem_kb as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}
