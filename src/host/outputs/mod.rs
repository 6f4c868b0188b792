//! Outputs: where the playout's frames go besides the clock. [`ogg_stream`] encodes a
//! channel to Ogg/Opus for the HTTP live stream.
//!
//! Config keys read here: `stream.*`.

pub mod ogg_stream;
