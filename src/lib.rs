//! Radio24: a 24-hour AI radio station in one binary.
//!
//! - [`api`] — listener and operator routes, the broadcast hub, the store (feature `api`);
//! - [`host`] — the on-air engine (feature `host`);
//! - [`bus`] — where the two meet: the `HostBus` trait, its wire types, its HTTP transport;
//! - [`db`] — the stores (SQLite, PostgreSQL), used by the API only;
//! - [`config`], [`cli`], [`startup`], [`telemetry`], [`metrics`], [`healthcheck`] — the process around them;
//! - [`sync`] — the poison-tolerant lock both sides use.

#[cfg(feature = "api")]
pub mod api;
pub mod bus;
pub mod cli;
pub mod config;
#[cfg(feature = "api")]
pub mod db;
pub mod domain;
pub mod healthcheck;
#[cfg(feature = "host")]
pub mod host;
pub mod metrics;
pub mod startup;
pub mod sync;
pub mod telemetry;
pub mod web;

/// 32 random bytes, hex-encoded: for generated tokens.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Installs the process-wide TLS crypto provider (ring). Call once before any HTTPS client
/// is built; calling again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
