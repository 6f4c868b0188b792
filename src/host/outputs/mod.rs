//! Outputs: where the playout's frames go besides the clock. [`ogg_stream`] encodes a
//! channel to Ogg/Opus for the HTTP live stream; [`archive`] records every channel into
//! hourly Ogg/Opus files with caption sidecars (the programme archive).
//!
//! Config keys read here: `stream.*`, `archive.*`.

pub mod archive;
pub mod ogg_stream;
