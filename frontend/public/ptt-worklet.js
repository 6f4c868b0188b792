// Push-to-talk capture: hands the microphone's samples (mono, the context's rate) to the
// page in blocks of 128 frames. Runs on the audio rendering thread.
class PttCapture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("ptt-capture", PttCapture);
