//! Closes the engine's coalescing windows on time: one task per hub sleeps until the next
//! window's end (`Hub::next_coalesce_deadline`, on the hub's clock) or until a window opens
//! that ends sooner (`Hub::coalesce_wakeup`), then lets out what is due
//! (`Hub::flush_coalesced`). The engine itself never sleeps or spawns.

use std::time::Duration;

use tidings_core::Hub;
use tokio::task::JoinHandle;

/// How long to wait before trying again after the store refused a flush.
const RETRY: Duration = Duration::from_millis(100);

/// Starts the task on the current runtime. Abort it after `Hub::shutdown`; `Hub::flush` lets
/// out whatever is still held. (Without rules it waits forever on a wake-up that never comes.)
pub(crate) fn spawn(hub: Hub) -> JoinHandle<()> {
    tokio::spawn(drive(hub))
}

async fn drive(hub: Hub) {
    loop {
        let Some(deadline) = hub.next_coalesce_deadline() else {
            hub.coalesce_wakeup().await;
            continue;
        };
        let wait = deadline.saturating_sub(hub.now_ms());
        if wait > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                () = hub.coalesce_wakeup() => continue,
            }
        }
        if let Err(e) = hub.flush_coalesced().await {
            // The store failed (it logged why) or the hub is shutting down; held events stay
            // held until it can take them or `Hub::flush` runs.
            tracing::debug!(message = "Could not let out coalesced events yet.", error = %e);
            tokio::time::sleep(RETRY).await;
        }
    }
}
