//! Logging: `RUST_LOG` filters (default `info`); `RADIO24_LOG_FORMAT=json` writes one JSON
//! object a line (for Cloud Logging and the like), otherwise human-readable text.
//! Secrets and listener audio are never recorded: secrets are `SecretString`s, and request
//! logs carry method, path and status only.

use tracing_subscriber::EnvFilter;

/// Without `RUST_LOG`: info, but the LiveKit signalling client's own connection lines only
/// when they are errors (the host's publisher logs each attempt and its outcome itself), and
/// webrtc-rs's only when they are warnings.
const DEFAULT_FILTER: &str =
    "info,actix_server=warn,livekit_signaling=error,webrtc=warn,webrtc_ice=warn";

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
