//! The JSON record of one measured point (one scenario, one target, one parameter set), as
//! written under target/bench/ and read back by `report`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One measured point.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Point {
    /// Points written by one invocation share a run id (its start time, Unix seconds).
    pub(crate) run_id: u64,
    pub(crate) scenario: String,
    pub(crate) target: String,
    /// The bench command line that produced this point.
    pub(crate) command: String,
    /// How the server was started.
    pub(crate) server_command: String,
    pub(crate) machine: String,
    pub(crate) transport: String,
    /// The subscribers' load generator: `raw` sockets or `client` (tidings-client); empty in
    /// points from before there was a choice (raw).
    pub(crate) loadgen: String,
    pub(crate) subscribers: u64,
    pub(crate) topics: u64,
    /// Requested publish rate (events/s, all topics together).
    pub(crate) rate: f64,
    pub(crate) duration_s: f64,
    // Connection ramp.
    pub(crate) connected: u64,
    pub(crate) connect_failures: u64,
    pub(crate) connect_per_s: f64,
    pub(crate) rss_before_bytes: u64,
    pub(crate) rss_after_bytes: u64,
    pub(crate) rss_per_conn_bytes: f64,
    // Measured window.
    pub(crate) published: u64,
    pub(crate) publish_errors: u64,
    pub(crate) publish_per_s: f64,
    pub(crate) delivered: u64,
    pub(crate) expected_deliveries: u64,
    pub(crate) deliveries_per_s: f64,
    pub(crate) malformed: u64,
    pub(crate) other_events: u64,
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
    pub(crate) server_cpu_s: f64,
    pub(crate) server_cpu_us_per_delivery: f64,
    pub(crate) server_cpu_us_per_publish: f64,
    pub(crate) generator_cpu_s: f64,
    pub(crate) server_rss_end_bytes: u64,
    /// Bytes the subscribers read per second (HTTP framing included), where measured.
    pub(crate) bytes_per_s: f64,
    /// `progress`: whether every key's final value reached a checking subscriber.
    pub(crate) final_values_exact: Option<bool>,
    // Churn.
    pub(crate) churn_connects: u64,
    pub(crate) churn_failures: u64,
    pub(crate) churn_per_s: f64,
    /// Free-form remarks (e.g. a target that could not run this scenario).
    pub(crate) note: String,
    /// `storm`: the reconnect storm's own figures.
    pub(crate) storm: Option<crate::storm::StormFigures>,
    /// `connect`: the connection-setup scenario's own figures.
    pub(crate) connect: Option<crate::connect::ConnectFigures>,
    /// `threads`: the server's worker threads in this point.
    pub(crate) server_threads: Option<usize>,
}

impl Point {
    /// Writes the point as `DIR/<run>-<scenario>-<target>-<n>.json`.
    pub(crate) fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!(
            "{}-{}-{}-{}{}{}.json",
            self.run_id,
            self.scenario,
            self.target,
            self.subscribers,
            if self.transport == "ws" { "-ws" } else { "" },
            self.connect
                .as_ref()
                .map(|c| format!("-c{}", c.in_flight))
                .or_else(|| self.server_threads.map(|t| format!("-t{t}")))
                .unwrap_or_default()
        ));
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }

    /// Every point under `dir`.
    pub(crate) fn load_all(dir: &Path) -> anyhow::Result<Vec<Self>> {
        let mut v = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read(&path)?;
                v.push(serde_json::from_slice(&text)?);
            }
        }
        Ok(v)
    }
}
