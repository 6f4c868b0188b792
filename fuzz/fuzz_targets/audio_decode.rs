//! A music file (`music::decode`: WAV, FLAC, Ogg Vorbis, MP3 through symphonia, averaged to
//! mono and resampled to 48 kHz), from arbitrary bytes under each extension the music
//! library picks up. A broken or hostile file in the music folder must cost that file, never
//! the station: `decode` returns samples or an error, and never more than it was asked for.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use radio24::host::audio::music::decode;
use radio24::host::audio::samples;
use radio24_fuzz::{scratch_dir, write_scratch};

/// The extensions the music library scans for (`EXTENSIONS` in music.rs); the name is the
/// format hint symphonia starts from.
const EXTENSIONS: [&str; 5] = ["mp3", "ogg", "oga", "flac", "wav"];

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    extension: u8,
    /// Seconds to decode at most, in tenths (the playout asks for a track's airtime).
    tenths: u8,
    file: &'a [u8],
}

/// `decode` catches a panic in the third-party decoders and returns it as an error (the
/// station's contract: a bad file costs that file). libfuzzer-sys's panic hook aborts at the
/// panic, before any `catch_unwind` can run, so this target puts the standard hook back: a
/// panic `decode` catches is then what it is in the station, and one it lets through still
/// reaches libfuzzer-sys's own `catch_unwind` around the target, which aborts (a crash).
static STANDARD_PANIC_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|input: Input<'_>| {
    STANDARD_PANIC_HOOK.call_once(|| drop(std::panic::take_hook()));
    let extension = EXTENSIONS[usize::from(input.extension) % EXTENSIONS.len()];
    let path = scratch_dir("music").join(format!("track.{extension}"));
    write_scratch(&path, input.file);
    let max_secs = f64::from(input.tenths) / 10.0;
    if let Ok(decoded) = decode(&path, max_secs) {
        assert!(
            decoded.len() <= samples(max_secs),
            "{} samples for {max_secs} s",
            decoded.len()
        );
    }
});
