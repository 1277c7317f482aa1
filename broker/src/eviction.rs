//! Eviction at the session cap. `GET /` is unauthenticated, so a client can fill the cap with
//! sessions it never opens, and they would lock everyone out for the whole adoption window.
//! Before a new session is refused at the cap, the oldest session that no tab ever connected
//! to is destroyed instead. A session someone has opened is never evicted; when every session
//! is open, the cap refuses as before. Counted as `luabroker_sessions_ended{cause="evicted"}`.

use crate::broker::{stop_worker, Broker};
use crate::session::EndCause;

/// Why an evicted session went, on its 404 page.
const EVICTED: &str = "it was never opened, and the server needed its place for a new session";

impl Broker {
    /// Destroys the oldest never-adopted session; false when there is none. The session is
    /// gone from the manager (its place free) on return; its worker stops in the background.
    pub fn evict_unadopted(&self) -> bool {
        let Some(victim) = self
            .manager
            .all()
            .into_iter()
            .filter(|s| !s.is_adopted())
            .min_by_key(|s| s.created)
        else {
            return false;
        };
        tracing::info!(session = %victim.id, vended = victim.vended_id,
            age_ms = victim.created.elapsed().as_millis() as u64,
            "evicting a never-opened session at the session cap");
        if let Some(worker) = self.begin_destroy(&victim, EndCause::Evicted, EVICTED.to_string()) {
            let grace = self.config.shutdown_grace;
            tokio::spawn(async move { stop_worker(&worker, grace).await });
        }
        true
    }
}
