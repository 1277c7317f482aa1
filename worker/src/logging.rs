//! Logging set-up, shared by every mode of the one executable (broker, zygote, worker): tracing
//! events to stderr, filtered by `RUST_LOG` (default `info`), coloured only on a terminal. A
//! worker's stderr is the broker's, so its lines land in the same log.

/// Installs the subscriber; a second call (or one after another subscriber) changes nothing.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
