// The microphone for push-to-talk: 16-bit mono PCM at 16 kHz (what `/ws/ptt` takes, and a
// third of the bytes of 48 kHz), handed over in blocks of at most one second (32 000 bytes,
// well under the socket's 64 KiB frame limit), with the level for the meter.
export const PTT_SAMPLE_RATE = 16_000;
const BLOCK_SAMPLES = PTT_SAMPLE_RATE; // one second

export interface RecorderEvents {
  onChunk: (pcm: Int16Array) => void;
  /** RMS of the latest input, 0..1. */
  onLevel: (level: number) => void;
}

/**
 * Resamples by linear interpolation. Positions count in a view of the input that starts one
 * sample early, with the previous block's last sample, so blocks join without a seam.
 */
class Resampler {
  private pos = 0;
  private last = 0;
  constructor(private readonly step: number) {}
  push(input: Float32Array, out: number[]) {
    const at = (k: number) => (k === 0 ? this.last : (input[k - 1] ?? 0));
    while (this.pos < input.length) {
      const i = Math.floor(this.pos);
      out.push(at(i) + (at(i + 1) - at(i)) * (this.pos - i));
      this.pos += this.step;
    }
    this.pos -= input.length;
    this.last = input[input.length - 1] ?? 0;
  }
}

export class PttRecorder {
  private context: AudioContext | null = null;
  private stream: MediaStream | null = null;
  private pending: number[] = [];

  /** Opens the microphone (asking the listener the first time). */
  async open(events: RecorderEvents): Promise<void> {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const context = new AudioContext();
    this.context = context;
    await context.audioWorklet.addModule("/ptt-worklet.js");
    const source = context.createMediaStreamSource(this.stream);
    const node = new AudioWorkletNode(context, "ptt-capture");
    const resampler = new Resampler(context.sampleRate / PTT_SAMPLE_RATE);
    node.port.onmessage = (event: MessageEvent<Float32Array>) => {
      const input = event.data;
      let sum = 0;
      for (const s of input) sum += s * s;
      events.onLevel(Math.min(1, Math.sqrt(sum / input.length) * 4));
      resampler.push(input, this.pending);
      while (this.pending.length >= BLOCK_SAMPLES) {
        events.onChunk(toPcm16(this.pending.splice(0, BLOCK_SAMPLES)));
      }
    };
    source.connect(node);
    // Not to the speakers: a muted gain keeps the graph pulling without echoing the caller.
    const mute = context.createGain();
    mute.gain.value = 0;
    node.connect(mute).connect(context.destination);
  }

  /** Stops the microphone; the last part-second is returned. */
  async close(): Promise<Int16Array> {
    const rest = toPcm16(this.pending.splice(0));
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    await this.context?.close().catch(() => undefined);
    this.context = null;
    return rest;
  }
}

function toPcm16(samples: number[]): Int16Array {
  const pcm = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i] ?? 0));
    pcm[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
  }
  return pcm;
}
