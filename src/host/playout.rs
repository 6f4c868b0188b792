//! Playout: the channel's output, one 20 ms frame of 48 kHz mono audio at a time, paced by
//! the [`Clock`]. It airs the [`Rundown`] in order, sends `segment_started`, a `caption` for
//! each sentence at the moment its first sample airs, and `segment_ended`. When nothing is
//! ready it airs a filler (station ID) rather than silence; when a segment's audio has not
//! arrived in time the missing frames are dead air, counted in [`PlayoutStats`]. A `now`
//! segment cuts the current one short with a short fade as soon as its first audio is there.
//! Frames go to every attached sink (a `broadcast` channel); with none attached the clock
//! still runs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::audio::{FRAME, FRAME_DURATION, RATE};
use super::clock::Clock;
use crate::bus::{HostEvent, Segment};
use crate::domain::ChannelName;

/// Length of the fade when a `now` segment cuts in (samples): 30 ms.
const CUT_FADE: usize = RATE as usize * 30 / 1000;
/// Late by more than this (the process stalled), the playout skips ahead instead of bursting.
const MAX_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);
/// Gap lengths kept for percentiles.
const GAP_HISTORY: usize = 4096;
/// Frames a sink may fall behind before it misses some.
const SINK_BUFFER: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below leaves its data consistent: a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What kind of segment this is (shown in `/now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    Talk,
    Speak,
    StationId,
    Music,
    Filler,
}

enum Piece {
    Sentence(String),
    Audio(Vec<i16>),
}

#[derive(Default)]
struct AudioQueue {
    pieces: VecDeque<Piece>,
    /// Offset into the front `Audio` piece.
    offset: usize,
    buffered: usize,
    finished: bool,
    produced: usize,
}

/// A segment in the rundown: its description and its audio as it arrives.
pub struct QueuedSegment {
    pub meta: Segment,
    pub kind: SegmentKind,
    /// Which writer and voice made it.
    pub writer: String,
    voice: Mutex<String>,
    started_at: Mutex<Option<DateTime<Utc>>>,
    duration_ms: AtomicU64,
    audio: Mutex<AudioQueue>,
}

impl QueuedSegment {
    pub fn new(
        meta: Segment,
        kind: SegmentKind,
        writer: impl Into<String>,
        voice: impl Into<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            duration_ms: AtomicU64::new(meta.duration_ms),
            meta,
            kind,
            writer: writer.into(),
            voice: Mutex::new(voice.into()),
            started_at: Mutex::new(None),
            audio: Mutex::new(AudioQueue::default()),
        })
    }

    /// The segment as the wire shows it: with its start time and length once known.
    pub fn describe(&self) -> Segment {
        let mut meta = self.meta.clone();
        meta.started_at = *lock(&self.started_at);
        meta.duration_ms = self.duration_ms.load(Ordering::Relaxed);
        meta
    }

    /// The voice that spoke it (the last one, if several did).
    pub fn voice(&self) -> String {
        lock(&self.voice).clone()
    }

    /// Sets the length from the audio produced (call once finished).
    pub fn set_duration_from_audio(&self) {
        let ms = self.produced() as u64 * 1000 / u64::from(RATE);
        self.duration_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks where a sentence starts: its caption airs with the next audio pushed.
    pub fn push_sentence(&self, text: impl Into<String>) {
        lock(&self.audio)
            .pieces
            .push_back(Piece::Sentence(text.into()));
    }

    /// Appends 48 kHz mono audio.
    pub fn push_audio(&self, samples: Vec<i16>) {
        if samples.is_empty() {
            return;
        }
        let mut q = lock(&self.audio);
        q.buffered += samples.len();
        q.produced += samples.len();
        q.pieces.push_back(Piece::Audio(samples));
    }

    /// No more audio will come.
    pub fn finish(&self) {
        lock(&self.audio).finished = true;
    }

    pub fn set_voice(&self, voice: &str) {
        *lock(&self.voice) = voice.to_owned();
    }

    /// Samples ready to air.
    pub fn buffered(&self) -> usize {
        lock(&self.audio).buffered
    }

    /// Samples produced so far (all of them once finished).
    pub fn produced(&self) -> usize {
        lock(&self.audio).produced
    }

    pub fn is_finished(&self) -> bool {
        lock(&self.audio).finished
    }

    /// Ready to start airing: some audio is there, or it is complete (possibly empty).
    fn is_ready(&self) -> bool {
        let q = lock(&self.audio);
        q.buffered > 0 || q.finished
    }

    /// Copies up to `out.len()` samples; returns how many, the sentences that start within
    /// them (with their sample offset), and whether the segment has ended.
    pub fn pull(&self, out: &mut [i16], captions: &mut Vec<(usize, String)>) -> (usize, bool) {
        let mut guard = lock(&self.audio);
        let q = &mut *guard;
        let mut filled = 0;
        while filled < out.len() {
            match q.pieces.front() {
                None => break,
                Some(Piece::Sentence(_)) => {
                    if let Some(Piece::Sentence(text)) = q.pieces.pop_front() {
                        captions.push((filled, text));
                    }
                }
                Some(Piece::Audio(samples)) => {
                    let start = q.offset;
                    let n = (samples.len() - start).min(out.len() - filled);
                    out[filled..filled + n].copy_from_slice(&samples[start..start + n]);
                    filled += n;
                    let done = start + n == samples.len();
                    q.offset = if done { 0 } else { start + n };
                    q.buffered -= n;
                    if done {
                        q.pieces.pop_front();
                    }
                }
            }
        }
        let ended = q.finished && q.pieces.is_empty();
        drop(guard);
        (filled, ended)
    }
}

/// What airs next, in order, plus a `now` segment waiting to cut in.
#[derive(Default)]
pub struct Rundown {
    inner: Mutex<RundownInner>,
}

#[derive(Default)]
struct RundownInner {
    on_air: Option<Arc<QueuedSegment>>,
    queue: VecDeque<Arc<QueuedSegment>>,
    cut_in: Option<Arc<QueuedSegment>>,
}

impl Rundown {
    /// Adds a segment at the end.
    pub fn push_back(&self, segment: Arc<QueuedSegment>) {
        lock(&self.inner).queue.push_back(segment);
    }

    /// Adds a studio segment to air after the current one and the studio segments already
    /// waiting, before the programme's own; returns how many segments air before it.
    pub fn push_after_speak(&self, segment: Arc<QueuedSegment>) -> usize {
        let mut inner = lock(&self.inner);
        let at = inner
            .queue
            .iter()
            .position(|s| s.kind != SegmentKind::Speak)
            .unwrap_or(inner.queue.len());
        inner.queue.insert(at, segment);
        at + usize::from(inner.on_air.is_some()) + usize::from(inner.cut_in.is_some())
    }

    /// Cuts the current segment short as soon as `segment` has audio.
    pub fn cut_in(&self, segment: Arc<QueuedSegment>) {
        let mut inner = lock(&self.inner);
        if let Some(previous) = inner.cut_in.replace(segment) {
            // A newer `now` wins; the older one still airs, next.
            inner.queue.push_front(previous);
        }
    }

    /// Segments waiting (not counting the one on air or a pending cut-in).
    pub fn len(&self) -> usize {
        lock(&self.inner).queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment on air and those waiting, in order.
    pub fn snapshot(&self) -> (Option<Arc<QueuedSegment>>, Vec<Arc<QueuedSegment>>) {
        let inner = lock(&self.inner);
        let mut next: Vec<_> = inner.cut_in.iter().cloned().collect();
        next.extend(inner.queue.iter().cloned());
        (inner.on_air.clone(), next)
    }

    /// Seconds of audio ready after what has aired: the rest of the current segment and
    /// everything queued that has been produced.
    pub fn ready_ahead_secs(&self) -> f64 {
        let inner = lock(&self.inner);
        let samples: usize = inner
            .on_air
            .iter()
            .chain(inner.cut_in.iter())
            .chain(inner.queue.iter())
            .filter(|s| s.kind != SegmentKind::Filler)
            .map(|s| s.buffered())
            .sum();
        samples as f64 / f64::from(RATE)
    }
}

/// Counters of what the playout did.
#[derive(Default)]
pub struct PlayoutStats {
    pub frames: AtomicU64,
    pub dead_air_frames: AtomicU64,
    pub segments: AtomicU64,
    pub fillers: AtomicU64,
    gaps: Mutex<GapLog>,
}

#[derive(Default)]
struct GapLog {
    recent: VecDeque<u64>,
    count: u64,
    max_frames: u64,
}

/// Dead-air gaps so far.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GapReport {
    pub count: u64,
    pub max_ms: u64,
    pub p99_ms: u64,
    pub dead_air_secs: f64,
}

impl PlayoutStats {
    fn record_gap(&self, frames: u64) {
        let mut log = lock(&self.gaps);
        log.count += 1;
        log.max_frames = log.max_frames.max(frames);
        if log.recent.len() == GAP_HISTORY {
            log.recent.pop_front();
        }
        log.recent.push_back(frames);
    }

    pub fn dead_air_secs(&self) -> f64 {
        self.dead_air_frames.load(Ordering::Relaxed) as f64 * FRAME_DURATION.as_secs_f64()
    }

    pub fn gaps(&self) -> GapReport {
        let log = lock(&self.gaps);
        let mut sorted: Vec<u64> = log.recent.iter().copied().collect();
        sorted.sort_unstable();
        let p99 = if sorted.is_empty() {
            0
        } else {
            sorted[((sorted.len() as f64 * 0.99).ceil() as usize).clamp(1, sorted.len()) - 1]
        };
        let frame_ms = FRAME_DURATION.as_millis() as u64;
        GapReport {
            count: log.count,
            max_ms: log.max_frames * frame_ms,
            p99_ms: p99 * frame_ms,
            dead_air_secs: self.dead_air_secs(),
        }
    }
}

/// Makes a filler segment when nothing else is ready.
pub trait FillerSource: Send + Sync + 'static {
    fn filler(&self) -> Arc<QueuedSegment>;
}

/// A running playout; dropping it stops the clock loop.
pub struct Playout {
    pub rundown: Arc<Rundown>,
    pub stats: Arc<PlayoutStats>,
    frames: broadcast::Sender<Arc<[i16]>>,
    task: JoinHandle<()>,
}

impl Drop for Playout {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Playout {
    pub fn spawn(
        channel: ChannelName,
        clock: Arc<dyn Clock>,
        events: broadcast::Sender<HostEvent>,
        filler: Arc<dyn FillerSource>,
    ) -> Self {
        let rundown = Arc::new(Rundown::default());
        let stats = Arc::new(PlayoutStats::default());
        let (frames, _) = broadcast::channel(SINK_BUFFER);
        let engine = Engine {
            channel,
            clock,
            events,
            filler,
            rundown: rundown.clone(),
            stats: stats.clone(),
            frames: frames.clone(),
            current: None,
            fading: Vec::new(),
            gap_frames: 0,
        };
        let task = tokio::spawn(engine.run());
        Self {
            rundown,
            stats,
            frames,
            task,
        }
    }

    /// Attaches a sink: it receives every frame from now on (and misses frames if it falls
    /// more than a second behind).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[i16]>> {
        self.frames.subscribe()
    }
}

struct OnAir {
    segment: Arc<QueuedSegment>,
    caption_index: u32,
}

struct Engine {
    channel: ChannelName,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<HostEvent>,
    filler: Arc<dyn FillerSource>,
    rundown: Arc<Rundown>,
    stats: Arc<PlayoutStats>,
    frames: broadcast::Sender<Arc<[i16]>>,
    current: Option<OnAir>,
    /// The tail of a segment that was cut, faded out and mixed under the next frames.
    fading: Vec<i16>,
    gap_frames: u64,
}

impl Engine {
    async fn run(mut self) {
        let frame = chrono::Duration::from_std(FRAME_DURATION).unwrap_or_default();
        let mut due = self.clock.now();
        loop {
            self.clock.sleep_until(due).await;
            let late = (self.clock.now() - due).to_std().unwrap_or_default();
            if late > MAX_CATCH_UP {
                tracing::warn!(channel = %self.channel, late = ?late, "playout stalled; skipping ahead");
                due = self.clock.now();
            }
            let out = self.render(due);
            // No sink attached is normal: the programme runs anyway.
            let _ = self.frames.send(out.into());
            self.stats.frames.fetch_add(1, Ordering::Relaxed);
            due += frame;
        }
    }

    fn start(&mut self, segment: Arc<QueuedSegment>, at: DateTime<Utc>) {
        *lock(&segment.started_at) = Some(at);
        let meta = segment.describe();
        if segment.kind == SegmentKind::Filler {
            self.stats.fillers.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.segments.fetch_add(1, Ordering::Relaxed);
        }
        lock(&self.rundown.inner).on_air = Some(segment.clone());
        let _ = self.events.send(HostEvent::SegmentStarted {
            channel: self.channel.clone(),
            segment: meta,
        });
        self.current = Some(OnAir {
            segment,
            caption_index: 0,
        });
    }

    fn end(&mut self, interrupted: bool) {
        if let Some(on_air) = self.current.take() {
            let mut inner = lock(&self.rundown.inner);
            if inner
                .on_air
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &on_air.segment))
            {
                inner.on_air = None;
            }
            drop(inner);
            let _ = self.events.send(HostEvent::SegmentEnded {
                channel: self.channel.clone(),
                segment_id: on_air.segment.meta.id,
                interrupted,
            });
        }
    }

    /// The next segment to air: the queue's head once it has audio, else a filler (so a
    /// segment still being voiced never causes dead air at its start).
    fn next_segment(&self) -> Arc<QueuedSegment> {
        let next = {
            let mut inner = lock(&self.rundown.inner);
            match inner.queue.front() {
                Some(head) if head.is_ready() => inner.queue.pop_front(),
                _ => None,
            }
        };
        next.unwrap_or_else(|| self.filler.filler())
    }

    fn render(&mut self, frame_start: DateTime<Utc>) -> Vec<i16> {
        let mut out = vec![0i16; FRAME];
        // A `now` segment cuts in once it has audio.
        let cut = {
            let mut inner = lock(&self.rundown.inner);
            match &inner.cut_in {
                Some(seg) if seg.is_ready() => inner.cut_in.take(),
                _ => None,
            }
        };
        if let Some(segment) = cut {
            if let Some(on_air) = &self.current {
                let mut tail = vec![0i16; CUT_FADE];
                let mut ignored = Vec::new();
                let (n, _) = on_air.segment.pull(&mut tail, &mut ignored);
                tail.truncate(n);
                let len = tail.len();
                for (i, s) in tail.iter_mut().enumerate() {
                    *s = (f64::from(*s) * (1.0 - i as f64 / len as f64)) as i16;
                }
                self.fading = tail;
            }
            self.end(true);
            self.start(segment, frame_start);
        }

        let mut filled = 0;
        let mut dead = false;
        let mut captions = Vec::new();
        let mut guard = 0;
        while filled < FRAME && guard < 64 {
            guard += 1;
            let Some(on_air) = &self.current else {
                let next = self.next_segment();
                self.start(next, frame_start);
                continue;
            };
            let segment = on_air.segment.clone();
            let (n, ended) = segment.pull(&mut out[filled..], &mut captions);
            for (offset, text) in captions.drain(..) {
                let at = frame_start
                    + chrono::Duration::microseconds(
                        ((filled + offset) as i64 * 1_000_000) / i64::from(RATE),
                    );
                if let Some(on_air) = self.current.as_mut() {
                    let index = on_air.caption_index;
                    on_air.caption_index += 1;
                    let _ = self.events.send(HostEvent::Caption {
                        channel: self.channel.clone(),
                        segment_id: segment.meta.id,
                        index,
                        text,
                        at,
                    });
                }
            }
            filled += n;
            if ended {
                self.end(false);
            } else if n == 0 {
                // The segment's audio has not arrived yet: dead air for the rest of the frame.
                dead = true;
                break;
            }
        }
        if !self.fading.is_empty() {
            let n = self.fading.len().min(FRAME);
            for (dst, src) in out.iter_mut().zip(self.fading.drain(..n)) {
                *dst = dst.saturating_add(src);
            }
        }
        if dead {
            self.stats.dead_air_frames.fetch_add(1, Ordering::Relaxed);
            self.gap_frames += 1;
        } else if self.gap_frames > 0 {
            self.stats.record_gap(self.gap_frames);
            self.gap_frames = 0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::host::clock::ScaledClock;

    struct Chime;

    impl FillerSource for Chime {
        fn filler(&self) -> Arc<QueuedSegment> {
            let seg = QueuedSegment::new(meta("ID"), SegmentKind::Filler, "station", "chime");
            seg.push_sentence("Radio24");
            seg.push_audio(vec![1; RATE as usize / 5]);
            seg.finish();
            seg
        }
    }

    fn meta(text: &str) -> Segment {
        Segment {
            id: Uuid::now_v7(),
            block: None,
            topic: None,
            text: text.into(),
            duration_ms: 0,
            started_at: None,
        }
    }

    use uuid::Uuid;

    fn start() -> (
        Playout,
        broadcast::Receiver<HostEvent>,
        broadcast::Receiver<Arc<[i16]>>,
    ) {
        let origin = DateTime::parse_from_rfc3339("2026-11-28T00:00:00Z")
            .unwrap()
            .to_utc();
        let clock = Arc::new(ScaledClock::new(origin, 1.0));
        let (events, rx) = broadcast::channel(1024);
        let playout = Playout::spawn(
            ChannelName::parse("radio24").unwrap(),
            clock,
            events,
            Arc::new(Chime),
        );
        let frames = playout.subscribe();
        (playout, rx, frames)
    }

    async fn next_event(rx: &mut broadcast::Receiver<HostEvent>) -> HostEvent {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_ready_a_filler_airs_not_silence() {
        let (playout, mut events, mut frames) = start();
        match next_event(&mut events).await {
            HostEvent::SegmentStarted { segment, .. } => assert_eq!(segment.text, "ID"),
            other => panic!("{other:?}"),
        }
        let frame = frames.recv().await.unwrap();
        assert_eq!(frame.len(), FRAME);
        assert!(frame.iter().all(|s| *s == 1));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(playout.stats.fillers.load(Ordering::Relaxed) >= 4);
        assert_eq!(playout.stats.dead_air_frames.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn captions_air_with_the_first_sample_of_their_sentence() {
        let (playout, mut events, _frames) = start();
        let seg = QueuedSegment::new(meta("One. Two."), SegmentKind::Talk, "template", "test");
        seg.push_sentence("One.");
        seg.push_audio(vec![7; RATE as usize]); // 1 s
        seg.push_sentence("Two.");
        seg.push_audio(vec![9; RATE as usize / 2]);
        seg.finish();
        let id = seg.meta.id;
        playout.rundown.push_back(seg);
        let (mut started, mut captions) = (None, Vec::new());
        loop {
            match next_event(&mut events).await {
                HostEvent::SegmentStarted { segment, .. } if segment.id == id => {
                    started = segment.started_at;
                }
                HostEvent::Caption {
                    segment_id,
                    text,
                    at,
                    index,
                    ..
                } if segment_id == id => {
                    captions.push((index, text, at));
                }
                HostEvent::SegmentEnded {
                    segment_id,
                    interrupted,
                    ..
                } if segment_id == id => {
                    assert!(!interrupted);
                    break;
                }
                _ => {}
            }
        }
        let started = started.unwrap();
        assert_eq!(captions.len(), 2);
        assert_eq!((captions[0].0, captions[0].1.as_str()), (0, "One."));
        assert_eq!(captions[0].2, started);
        assert_eq!((captions[1].0, captions[1].1.as_str()), (1, "Two."));
        assert_eq!(captions[1].2 - started, chrono::Duration::seconds(1));
        assert_eq!(playout.stats.dead_air_frames.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn audio_that_arrives_late_is_dead_air_and_a_gap() {
        let (playout, mut events, _frames) = start();
        let seg = QueuedSegment::new(meta("slow"), SegmentKind::Talk, "template", "test");
        seg.push_sentence("slow");
        seg.push_audio(vec![5; FRAME * 2]);
        let id = seg.meta.id;
        playout.rundown.push_back(seg.clone());
        loop {
            if let HostEvent::SegmentStarted { segment, .. } = next_event(&mut events).await
                && segment.id == id
            {
                break;
            }
        }
        // 10 frames with nothing to play, then the rest arrives.
        tokio::time::sleep(FRAME_DURATION * 12).await;
        seg.push_audio(vec![5; FRAME]);
        seg.finish();
        loop {
            if let HostEvent::SegmentEnded { segment_id, .. } = next_event(&mut events).await
                && segment_id == id
            {
                break;
            }
        }
        let gaps = playout.stats.gaps();
        assert_eq!(gaps.count, 1);
        assert!((180..=260).contains(&gaps.max_ms), "{gaps:?}");
        assert!(gaps.dead_air_secs > 0.15);
    }

    #[tokio::test(start_paused = true)]
    async fn a_now_segment_cuts_in_once_its_audio_arrives() {
        let (playout, mut events, mut frames) = start();
        let long = QueuedSegment::new(meta("long"), SegmentKind::Talk, "template", "test");
        long.push_sentence("long");
        long.push_audio(vec![3; RATE as usize * 60]);
        long.finish();
        let long_id = long.meta.id;
        playout.rundown.push_back(long);
        loop {
            if let HostEvent::SegmentStarted { segment, .. } = next_event(&mut events).await
                && segment.id == long_id
            {
                break;
            }
        }
        let urgent = QueuedSegment::new(meta("now"), SegmentKind::Speak, "studio", "test");
        let urgent_id = urgent.meta.id;
        playout.rundown.cut_in(urgent.clone());
        // Not yet: it has no audio, so the long segment goes on.
        tokio::time::sleep(FRAME_DURATION * 5).await;
        assert!(
            playout
                .rundown
                .snapshot()
                .0
                .is_some_and(|s| s.meta.id == long_id)
        );
        urgent.push_sentence("now");
        urgent.push_audio(vec![20_000; RATE as usize]);
        urgent.finish();
        let frames_when_ready = playout.stats.frames.load(Ordering::Relaxed);
        let mut ended = false;
        loop {
            match next_event(&mut events).await {
                HostEvent::SegmentEnded {
                    segment_id,
                    interrupted,
                    ..
                } if segment_id == long_id => {
                    assert!(interrupted);
                    ended = true;
                }
                HostEvent::SegmentStarted { segment, .. } if segment.id == urgent_id => break,
                _ => {}
            }
        }
        assert!(ended);
        let waited = playout.stats.frames.load(Ordering::Relaxed) - frames_when_ready;
        assert!(waited <= 2, "cut in after {waited} frames");
        // The first frame of the new segment carries its audio (with the old one fading under it).
        loop {
            let frame = frames.recv().await.unwrap();
            if frame.iter().any(|s| *s > 15_000) {
                break;
            }
        }
    }
}
