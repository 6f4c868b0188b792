//! A channel's live Ogg/Opus stream: one encoder task per channel, subscribed to the
//! playout's frames (48 kHz mono, 20 ms), encoding Opus at `stream.bitrate` and cutting an
//! Ogg page every `stream.page_packets` packets, so the stream is live (100 ms by default).
//! Pages fan out through a bounded `broadcast`; each listener gets the two header pages the
//! encoder keeps, then live pages (see [`crate::bus::audio::listener_stream`]: a listener
//! that falls `stream.listener_buffer_pages` behind is dropped, never waited for).
//!
//! The task starts with the channel's first listener, then runs as long as the channel, but
//! encodes only while someone listens (and to the end of a page it has begun): a channel
//! nobody hears costs a frame copy, not an encoder. Not stopping it when the last listener
//! leaves (which would mean a new encoder for the next one) keeps the serial
//! number, page sequence and granule position continuous for the whole life of the channel,
//! so the API's relay can reconnect to it and carry on the same Ogg stream. The granule
//! position counts programme time: frames nobody heard, or that the encoder missed, still
//! advance it, so it only ever increases.
//!
//! Config keys read here: `stream.bitrate`, `stream.page_packets`,
//! `stream.listener_buffer_pages`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::bus::audio::{AudioStream, PageSplitter, listener_stream};
use crate::domain::ChannelName;
use crate::host::audio::{FRAME, RATE};
use crate::sync::lock;

/// Live pages buffered in the fan-out: listeners copy out of it at once (into their own
/// queues), so a few seconds is plenty.
const FANOUT_PAGES: usize = 64;
/// The largest Opus packet (RFC 6716 recommends sizing for this).
const MAX_PACKET: usize = 4000;

/// Settings of the stream (`stream.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OggStreamConfig {
    /// Opus bitrate, bits per second.
    pub bitrate: u32,
    /// 20 ms packets per Ogg page.
    pub page_packets: usize,
    /// Pages a listener may fall behind by before it is dropped.
    pub listener_buffer_pages: usize,
}

impl Default for OggStreamConfig {
    fn default() -> Self {
        Self {
            bitrate: 64_000,
            page_packets: 5,
            listener_buffer_pages: 50,
        }
    }
}

/// The stream could not be set up (libopus refused the settings).
#[derive(Debug, thiserror::Error)]
#[error("Opus encoder: {0}")]
pub struct EncoderError(String);

/// Opus into Ogg pages, one 20 ms frame at a time. Synchronous, so it is tested alone.
pub struct OggEncoder {
    opus: opus::Encoder,
    writer: PacketWriter<'static, Vec<u8>>,
    splitter: PageSplitter,
    serial: u32,
    /// 48 kHz samples of programme since the stream began (the next packet ends here plus
    /// one frame).
    granule: u64,
    in_page: usize,
    page_packets: usize,
    /// Frames were skipped: reset the encoder's prediction before the next one.
    discontinuity: bool,
    packet: Vec<u8>,
}

impl OggEncoder {
    /// A new stream with a random serial; returns it and its two header pages.
    pub fn new(
        channel: &ChannelName,
        config: &OggStreamConfig,
    ) -> Result<(Self, Vec<Bytes>), EncoderError> {
        let err = |e: opus::Error| EncoderError(e.to_string());
        let mut opus = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Audio)
            .map_err(err)?;
        opus.set_bitrate(opus::Bitrate::Bits(
            i32::try_from(config.bitrate).unwrap_or(i32::MAX),
        ))
        .map_err(err)?;
        let pre_skip = u16::try_from(opus.get_lookahead().map_err(err)?).unwrap_or(0);
        let mut encoder = Self {
            opus,
            writer: PacketWriter::new(Vec::new()),
            splitter: PageSplitter::new(),
            serial: rand::random(),
            granule: 0,
            in_page: 0,
            page_packets: config.page_packets.max(1),
            discontinuity: false,
            packet: vec![0; MAX_PACKET],
        };
        let mut headers = Vec::new();
        // Each header packet on a page of its own, as RFC 7845 requires.
        headers.extend(encoder.write(opus_head(pre_skip), PacketWriteEndInfo::EndPage, 0)?);
        headers.extend(encoder.write(opus_tags(channel), PacketWriteEndInfo::EndPage, 0)?);
        Ok((encoder, headers))
    }

    /// The stream's serial number.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// True when a page has been begun and not yet flushed.
    pub fn mid_page(&self) -> bool {
        self.in_page > 0
    }

    /// Programme frames that were not encoded (nobody listened, or the encoder fell behind):
    /// the granule position moves on, so timestamps keep following the programme.
    pub fn skip(&mut self, frames: u64) {
        self.granule += frames * FRAME as u64;
        self.discontinuity = true;
    }

    /// Encodes one 20 ms frame; returns the pages it completed (one every `page_packets`).
    pub fn encode(&mut self, frame: &[i16]) -> Result<Vec<Bytes>, EncoderError> {
        self.encode_packet(frame, false)
    }

    /// Encodes the stream's last frame and ends the stream: returns the remaining pages, the
    /// last one flagged end-of-stream (a recording closes its file with this).
    pub fn finish(&mut self, frame: &[i16]) -> Result<Vec<Bytes>, EncoderError> {
        self.encode_packet(frame, true)
    }

    fn encode_packet(&mut self, frame: &[i16], last: bool) -> Result<Vec<Bytes>, EncoderError> {
        if frame.len() != FRAME {
            return Err(EncoderError(format!(
                "frame of {} samples, expected {FRAME}",
                frame.len()
            )));
        }
        if std::mem::take(&mut self.discontinuity) {
            // What came before is not what this frame follows: start the prediction afresh.
            self.opus
                .reset_state()
                .map_err(|e| EncoderError(e.to_string()))?;
        }
        let len = self
            .opus
            .encode(frame, &mut self.packet)
            .map_err(|e| EncoderError(e.to_string()))?;
        self.granule += FRAME as u64;
        self.in_page += 1;
        let end = if last {
            self.in_page = 0;
            PacketWriteEndInfo::EndStream
        } else if self.in_page >= self.page_packets {
            self.in_page = 0;
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        let packet = self.packet[..len].to_vec();
        self.write(packet, end, self.granule)
    }

    fn write(
        &mut self,
        packet: Vec<u8>,
        end: PacketWriteEndInfo,
        granule: u64,
    ) -> Result<Vec<Bytes>, EncoderError> {
        self.writer
            .write_packet(packet, self.serial, end, granule)
            .map_err(|e| EncoderError(format!("Ogg writer: {e}")))?;
        let written = std::mem::take(self.writer.inner_mut());
        self.splitter.push(&written);
        let mut pages = Vec::new();
        while let Some(page) = self
            .splitter
            .next_page()
            .map_err(|e| EncoderError(format!("Ogg writer: {e}")))?
        {
            pages.push(page);
        }
        Ok(pages)
    }
}

/// The `OpusHead` packet (RFC 7845 §5.1): mono, 48 kHz, mapping family 0.
fn opus_head(pre_skip: u16) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(1); // channels
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&RATE.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family
    head
}

/// The `OpusTags` packet (RFC 7845 §5.2): the encoder and the channel's name.
fn opus_tags(channel: &ChannelName) -> Vec<u8> {
    let vendor = concat!("radio24 ", env!("CARGO_PKG_VERSION"));
    let comments = [
        format!("TITLE=Radio24 {channel}"),
        "ORGANIZATION=Radio24".to_owned(),
    ];
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for c in &comments {
        tags.extend_from_slice(&(c.len() as u32).to_le_bytes());
        tags.extend_from_slice(c.as_bytes());
    }
    tags
}

struct Shared {
    headers: Vec<Bytes>,
    /// Taken when the encoder stops, so that every listener's stream ends.
    pages: Mutex<Option<broadcast::Sender<Bytes>>>,
    listeners: Arc<AtomicUsize>,
    listener_buffer: usize,
}

/// A channel's running stream; dropping it stops the encoder (and ends every listener).
pub struct OggStream {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for OggStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OggStream {
    /// Starts the encoder task on the playout's `frames`. It ends when the playout does.
    pub fn spawn(
        channel: &ChannelName,
        frames: broadcast::Receiver<Arc<[i16]>>,
        config: &OggStreamConfig,
    ) -> Result<Self, EncoderError> {
        let (encoder, headers) = OggEncoder::new(channel, config)?;
        let (pages, _) = broadcast::channel(FANOUT_PAGES);
        let shared = Arc::new(Shared {
            headers,
            pages: Mutex::new(Some(pages.clone())),
            listeners: Arc::new(AtomicUsize::new(0)),
            listener_buffer: config.listener_buffer_pages,
        });
        let task = tokio::spawn(run(channel.clone(), encoder, frames, pages, shared.clone()));
        Ok(Self { shared, task })
    }

    /// A new listener: the header pages, then live pages. `None` once the encoder stopped.
    pub fn listen(&self) -> Option<AudioStream> {
        let receiver = lock(&self.shared.pages).as_ref()?.subscribe();
        Some(listener_stream(
            self.shared.headers.clone(),
            receiver,
            self.shared.listeners.clone(),
            self.shared.listener_buffer,
            "host",
        ))
    }

    /// Listeners now connected (in split mode, each API relay is one).
    pub fn listeners(&self) -> usize {
        self.shared.listeners.load(Ordering::Relaxed)
    }

    /// False once the playout it followed has gone (the channel was removed).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

async fn run(
    channel: ChannelName,
    mut encoder: OggEncoder,
    mut frames: broadcast::Receiver<Arc<[i16]>>,
    pages: broadcast::Sender<Bytes>,
    shared: Arc<Shared>,
) {
    tracing::info!(%channel, serial = encoder.serial(), "stream encoder ready");
    loop {
        match frames.recv().await {
            Ok(frame) => {
                if pages.receiver_count() == 0 && !encoder.mid_page() {
                    encoder.skip(1);
                    continue;
                }
                match encoder.encode(&frame) {
                    // Nobody listening in between is fine: the page is simply not heard.
                    Ok(done) => done.into_iter().for_each(|page| {
                        let _ = pages.send(page);
                    }),
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "a frame could not be encoded; skipped");
                        encoder.skip(1);
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(%channel, missed, "stream encoder fell behind the playout");
                encoder.skip(missed);
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    tracing::info!(%channel, "stream encoder stopped: the channel's playout ended");
    lock(&shared.pages).take();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::audio::granule_position;

    fn channel() -> ChannelName {
        ChannelName::parse("radio24").unwrap()
    }

    fn tone(n: usize) -> Vec<i16> {
        (0..FRAME)
            .map(|i| {
                let t = (n * FRAME + i) as f64 / f64::from(RATE);
                ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect()
    }

    #[test]
    fn headers_then_a_page_every_few_packets_that_decode_to_the_input_length() {
        let config = OggStreamConfig::default();
        let (mut enc, headers) = OggEncoder::new(&channel(), &config).unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(&headers[0][28..36], b"OpusHead");
        assert_eq!(
            headers[0][5] & 0x02,
            0x02,
            "the first page begins the stream"
        );
        assert_eq!(&headers[1][28..36], b"OpusTags");
        let mut pages = Vec::new();
        for n in 0..20 {
            pages.extend(enc.encode(&tone(n)).unwrap());
        }
        assert_eq!(pages.len(), 4);
        let granules: Vec<u64> = pages.iter().filter_map(|p| granule_position(p)).collect();
        assert_eq!(granules, vec![4800, 9600, 14400, 19200]);

        let mut bytes: Vec<u8> = headers.iter().flat_map(|h| h.to_vec()).collect();
        pages.iter().for_each(|p| bytes.extend_from_slice(p));
        let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
        let mut decoder = opus::Decoder::new(RATE, opus::Channels::Mono).unwrap();
        let mut decoded = 0;
        let mut loudest = 0i16;
        let mut n = 0;
        while let Some(packet) = reader.read_packet().unwrap() {
            assert_eq!(packet.stream_serial(), enc.serial());
            n += 1;
            if n <= 2 {
                continue;
            }
            let mut out = vec![0i16; 5760];
            let got = decoder.decode(&packet.data, &mut out, false).unwrap();
            decoded += got;
            loudest = loudest.max(out[..got].iter().map(|s| s.saturating_abs()).max().unwrap());
        }
        assert_eq!(decoded, 20 * FRAME);
        assert!(loudest > 4000, "the tone survives: {loudest}");
    }

    #[test]
    fn finish_flushes_the_last_page_flagged_end_of_stream() {
        let config = OggStreamConfig::default();
        let (mut enc, _) = OggEncoder::new(&channel(), &config).unwrap();
        let mut pages: Vec<Bytes> = (0..2).flat_map(|n| enc.encode(&tone(n)).unwrap()).collect();
        assert!(pages.is_empty(), "mid-page");
        pages.extend(enc.finish(&tone(2)).unwrap());
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0][5] & 0x04, 0x04, "end-of-stream flag");
        assert_eq!(granule_position(&pages[0]), Some(3 * FRAME as u64));
    }

    #[test]
    fn skipped_frames_move_the_granule_position_on() {
        let config = OggStreamConfig::default();
        let (mut enc, _) = OggEncoder::new(&channel(), &config).unwrap();
        enc.skip(100);
        let pages: Vec<Bytes> = (0..5).flat_map(|n| enc.encode(&tone(n)).unwrap()).collect();
        assert_eq!(granule_position(&pages[0]), Some(105 * FRAME as u64));
    }
}
