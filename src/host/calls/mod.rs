//! Listener call-ins on the host: checking and airing them.

pub mod moderation;
pub mod transcribe;
