#!/usr/bin/env bash
# Writes fuzz/seeds/: a few valid inputs per target for the fuzzer to start from, so 60 s
# of fuzzing reaches past the file headers. Needs sox, opus-tools and espeak-ng. Each seed
# starts with the bytes the target's `Input` reads before its last field (see the targets);
# the run keeps what it grows in fuzz/corpus/ (not committed).
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf seeds
mkdir -p seeds/{ptt_frames,config_load,wav_stream,audio_decode,ogg_pages}

# prefix FILE BYTES... : FILE with BYTES (octal escapes for printf) in front.
prefix() { local file=$1; shift; { printf "$@"; cat "$file"; }; }

sox -n -r 16000 -c 1 -b 16 "$tmp/tone.wav" synth 0.02 sine 440
sox -n -r 44100 -c 2 -b 16 "$tmp/stereo.wav" synth 0.05 sine 300
sox -n -r 22050 -c 1 "$tmp/tone.flac" synth 0.05 sine 500
sox -n -r 44100 -c 2 "$tmp/tone.ogg" synth 0.1 sine 600
sox -n -r 48000 -c 1 -b 16 "$tmp/opus.wav" synth 0.1 sine 700
opusenc --quiet "$tmp/opus.wav" "$tmp/tone.opus"
# espeak-ng's own output: a WAV header with bogus sizes, as the voice reads it.
espeak-ng --stdout "ok" | head -c 3000 >"$tmp/espeak.wav"

# wav_stream: no cuts (0), then the WAV.
prefix "$tmp/tone.wav" '\0' >seeds/wav_stream/tone.wav
prefix "$tmp/espeak.wav" '\0' >seeds/wav_stream/espeak.wav
prefix "$tmp/stereo.wav" '\0' >seeds/wav_stream/stereo.wav

# audio_decode: extension index (0 mp3, 1 ogg, 2 oga, 3 flac, 4 wav), tenths of a second.
prefix "$tmp/stereo.wav" '\4\12' >seeds/audio_decode/stereo.wav
prefix "$tmp/tone.flac" '\3\12' >seeds/audio_decode/tone.flac
prefix "$tmp/tone.ogg" '\1\12' >seeds/audio_decode/tone.ogg
prefix "$tmp/tone.opus" '\2\12' >seeds/audio_decode/tone.opus

# ogg_pages: no cuts, then an Ogg/Opus stream.
prefix "$tmp/tone.opus" '\0' >seeds/ogg_pages/tone.opus

# config_load: no flat variables, no nested ones, then the shipped files.
for f in ../config/*.toml; do
  prefix "$f" '\0\0' >"seeds/config_load/$(basename "$f")"
done

# ptt_frames: the largest frame limit, 16 frames a message, skipping on, no cuts; then the
# masked client frames of a call-in; then a zero length for the separate text (two bytes:
# the input is over 256 bytes).
python3 - "$tmp/ptt.bin" <<'PY'
import sys
def frame(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04"):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
wire = b"".join([
    frame(1, b'{"type":"hello"}'),
    frame(1, b'{"type":"text","text":"\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf"}'),
    frame(1, b'{"type":"audio_start","encoding":"pcm_s16le","sample_rate":16000}'),
    frame(2, bytes(range(256)) * 2),
    frame(2, b"\x00\x01" * 40, fin=False),
    frame(9, b"ping"),
    frame(0, b"\x02\x03" * 40),
    frame(1, b'{"type":"audio_end"}'),
    frame(1, b'{"type":"cancel","id":"00000000-0000-0000-0000-000000000000"}'),
    frame(8, b"\x03\xe8bye"),
])
open(sys.argv[1], "wb").write(b"\xff\xff\x0f\x01\x00" + wire + b"\x00\x00")
PY
cp "$tmp/ptt.bin" seeds/ptt_frames/call.bin
ls -l seeds/*
