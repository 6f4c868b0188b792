//! Outputs: where the playout's frames go besides the clock. [`ogg_stream`] encodes a
//! channel to Ogg/Opus for the HTTP live stream; [`livekit`] publishes it into the channel's
//! LiveKit room.
//!
//! Config keys read here: `stream.*`, `livekit.*`.

pub mod livekit;
pub mod ogg_stream;
