//! The live stream's encoder (`ogg_stream::OggEncoder`: Opus in Ogg pages) with any
//! `stream.bitrate` and `stream.page_packets` the config accepts, arbitrary programme audio,
//! frames skipped (nobody listening) and an end of stream. What it writes must read back as
//! one Ogg stream, with the `ogg` crate's reader: the two header packets, then one packet per
//! frame encoded, one serial, granule positions that never go back.

#![no_main]

use std::io::Cursor;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use radio24::domain::ChannelName;
use radio24::host::audio::FRAME;
use radio24::host::outputs::ogg_stream::{OggEncoder, OggStreamConfig};

#[derive(Debug, Arbitrary)]
enum Step {
    /// One frame, its samples repeated from these (silence when empty).
    Encode(Vec<i16>),
    /// Frames nobody heard (at most 255 at a time).
    Skip(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// `stream.bitrate`: the config accepts 6 000..=510 000.
    bitrate: u32,
    /// `stream.page_packets`: the config accepts 1..=50.
    page_packets: u8,
    steps: Vec<Step>,
    /// End with a last frame (as a recording closes its file).
    finish: bool,
}

fuzz_target!(|input: Input| {
    let config = OggStreamConfig {
        bitrate: 6_000 + input.bitrate % 504_001,
        page_packets: 1 + usize::from(input.page_packets) % 50,
        listener_buffer_pages: 50,
    };
    let Ok(channel) = ChannelName::parse("radio24") else {
        panic!("the default channel name is refused");
    };
    let (mut encoder, mut pages) = match OggEncoder::new(&channel, &config) {
        Ok(made) => made,
        Err(e) => panic!("no encoder for settings the config accepts ({config:?}): {e}"),
    };
    let mut encoded = 0usize;
    for step in input.steps.iter().take(200) {
        match step {
            Step::Encode(pattern) => {
                let frame = frame_of(pattern);
                match encoder.encode(&frame) {
                    Ok(more) => pages.extend(more),
                    Err(e) => panic!("a 20 ms frame was refused: {e}"),
                }
                encoded += 1;
            }
            Step::Skip(frames) => encoder.skip(u64::from(*frames)),
        }
    }
    if input.finish {
        match encoder.finish(&frame_of(&[])) {
            Ok(more) => pages.extend(more),
            Err(e) => panic!("the last frame was refused: {e}"),
        }
        encoded += 1;
        assert!(!encoder.mid_page(), "the stream ended mid-page");
    }

    let bytes: Vec<u8> = pages.concat();
    let mut reader = ogg::reading::PacketReader::new(Cursor::new(bytes));
    let mut packets = 0usize;
    let mut last_granule = 0u64;
    loop {
        match reader.read_packet() {
            Ok(Some(packet)) => {
                assert_eq!(packet.stream_serial(), encoder.serial(), "a second serial");
                let granule = packet.absgp_page();
                assert!(granule >= last_granule, "the granule position went back");
                last_granule = granule;
                packets += 1;
            }
            Ok(None) => break,
            Err(e) => panic!("the stream does not read back: {e}"),
        }
    }
    // Packets of a page not yet flushed are still inside the encoder.
    if !encoder.mid_page() {
        assert_eq!(packets, 2 + encoded, "packets lost or made up");
    } else {
        assert!(packets <= 2 + encoded, "packets made up");
    }
});

/// A frame of [`FRAME`] samples repeating `pattern`.
fn frame_of(pattern: &[i16]) -> Vec<i16> {
    if pattern.is_empty() {
        return vec![0; FRAME];
    }
    pattern.iter().copied().cycle().take(FRAME).collect()
}
