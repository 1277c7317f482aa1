//! Starts worker processes.
//!
//! A worker is this same executable run again in worker mode (`/proc/self/exe __worker`), so an
//! installed binary never needs a second one. The broker is multi-threaded, so it never forks
//! and keeps running Rust in the child: `std::process::Command` without a `pre_exec` hook takes
//! the posix_spawn path (DESIGN.md 3). All spawns happen on one dedicated thread that lives as
//! long as the broker, because a parent-death signal fires when the *thread* that created the
//! child exits, not the process; a tokio blocking-pool thread would retire and kill its
//! children with it.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use tokio::sync::oneshot;
use worker::process::{ENV_PARENT, ENV_SOCKET, ENV_TOKEN};

/// First argument that puts the executable in worker mode.
pub const WORKER_ARG: &str = "__worker";

struct Request {
    token_hex: String,
    reply: oneshot::Sender<io::Result<i32>>,
}

#[derive(Clone)]
pub struct Spawner {
    requests: mpsc::Sender<Request>,
}

impl Spawner {
    /// Starts the spawning thread. `socket` is the broker's private worker socket.
    pub fn start(socket: PathBuf) -> io::Result<Spawner> {
        let exe = std::env::current_exe()?;
        let parent = std::process::id().to_string();
        let (requests, inbox) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                for req in inbox {
                    let spawned = Command::new(&exe)
                        .arg(WORKER_ARG)
                        .env(ENV_SOCKET, &socket)
                        .env(ENV_TOKEN, &req.token_hex)
                        .env(ENV_PARENT, &parent)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::inherit())
                        .spawn()
                        // Dropping a std Child neither waits nor kills: the reaper owns the exit.
                        .map(|child| child.id() as i32);
                    let _ = req.reply.send(spawned);
                }
            })?;
        Ok(Spawner { requests })
    }

    /// Starts one worker that will present `token`; returns its pid.
    pub async fn spawn(&self, token_hex: String) -> io::Result<i32> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { token_hex, reply })
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        answer
            .await
            .map_err(|_| io::Error::other("spawner thread is gone"))?
    }
}
