//! Logging set-up, shared by every mode of the one executable (broker, zygote, worker): tracing
//! events to stderr, as text for people (coloured only on a terminal) or as one JSON object per
//! line for machines (`--log-format json`: the event's fields flattened to the top level, the
//! worker's session span under `span`). A worker's stderr is the broker's, so its lines land in
//! the same log; the broker hands its format and filter to the zygote and workers through
//! [`ENV_FORMAT`] and [`ENV_FILTER`].

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

/// `json` or `text`, for the zygote and workers (set by the broker, inherited by its children).
pub const ENV_FORMAT: &str = "LUABROKER_CHILD_LOG_FORMAT";
/// The broker's log filter, for the zygote and workers.
pub const ENV_FILTER: &str = "LUABROKER_CHILD_LOG_FILTER";

/// Changes the filter of a running process (the broker's SIGHUP).
pub type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// The zygote's and a worker's set-up: the format and filter the broker handed down, else
/// `RUST_LOG` (default `info`) as text.
pub fn init() {
    let json = std::env::var(ENV_FORMAT).is_ok_and(|f| f == "json");
    let filter = std::env::var(ENV_FILTER)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = install(filter, json);
}

/// Installs the subscriber; `None` if one was already installed (a second call changes
/// nothing).
pub fn install(filter: EnvFilter, json: bool) -> Option<FilterHandle> {
    let (filter, handle) = reload::Layer::new(filter);
    let output = fmt::layer().with_writer(std::io::stderr);
    let output = if json {
        output
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        output
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .ok()?;
    Some(handle)
}
