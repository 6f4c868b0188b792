//! Outputs: where the playout's frames go besides the clock. [`ogg_stream`] encodes a
//! channel to Ogg/Opus for the HTTP live stream; [`livekit`] publishes it into the channel's
//! LiveKit room; [`archive`] records every channel into hourly Ogg/Opus files with caption
//! sidecars (the programme archive).
//!
//! Config keys read here: `stream.*`, `livekit.*`, `archive.*`.

pub mod archive;
pub mod livekit;
pub mod ogg_stream;
