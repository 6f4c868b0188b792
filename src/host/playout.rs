//! Playout: the channel's output, one 20 ms frame of 48 kHz mono audio at a time, paced by
//! the [`Clock`]. It airs the [`Rundown`] in order, sends `segment_started`, a `caption` for
//! each sentence at the moment its first sample airs, and `segment_ended`. When nothing is
//! ready it airs a filler (station ID) rather than silence; when a segment's audio has not
//! arrived in time the missing frames are dead air, counted in [`PlayoutStats`]. A `now`
//! segment cuts the current one short with a short fade as soon as its first audio is there.
//! A spoken segment whose audio stays blank (below [`BlankAir::threshold_dbfs`] for longer
//! than [`BlankAir::after`]: a voice that answers silence) is cut for the filler too, logged
//! and counted; deliberate silence (captions without a voice), music and callers are exempt.
//! Frames go to every attached sink (a `broadcast` channel); with none attached the clock
//! still runs.
//!
//! The frame clock runs on a thread of its own, not on the async runtime: rendering a frame
//! takes microseconds and never waits, while the runtime's threads also run producers,
//! encoders, HTTP and whatever else the process does, any of which could hold a thread long
//! enough to make a frame late. How late each tick came (real time), ticks later than
//! [`LATE_TICK`] and frames skipped after a stall are in [`PlayoutStats::timing`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::audio::{FRAME, FRAME_DURATION, RATE};
use super::clock::Clock;
use crate::bus::{HostEvent, Lateness, PlayoutTiming, Segment, SpeakMode, Speaker};
use crate::domain::ChannelName;
use crate::sync::lock;

/// Length of the fade when a `now` segment cuts in (samples): 30 ms.
const CUT_FADE: usize = RATE as usize * 30 / 1000;
/// Behind the programme clock by more than this (programme time: the process or the
/// machine stalled), the playout skips ahead instead of bursting the missed frames out at
/// once. It also bounds how far what airs may trail the clock the producer plans by.
const MAX_CATCH_UP: Duration = Duration::from_secs(2);
/// A tick later than this (real time) counts as late: a frame's worth, past which a live
/// listener's jitter buffer may run dry.
pub const LATE_TICK: Duration = FRAME_DURATION;
/// The programme clock moving by more than this against the machine's monotonic clock is a
/// step of the clock (e.g. the wall clock set by hand), which the playout follows.
const MAX_CLOCK_STEP: chrono::Duration = chrono::Duration::milliseconds(1000);
/// Gap lengths kept for percentiles.
const GAP_HISTORY: usize = 4096;
/// Frames a sink may fall behind before it misses some.
const SINK_BUFFER: usize = 64;

/// What kind of segment this is (shown in `/now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    Talk,
    Speak,
    StationId,
    Music,
    Filler,
    /// A listener's turn on air: their words read out, or their recording.
    Caller,
    /// The host's part of a call: introducing the caller, or answering them.
    CallHost,
}

impl SegmentKind {
    /// Whether a blank stretch of it is blank air: the host's own voice should be heard.
    /// A track's quiet passage or a caller's pause is programme, and a filler is what blank
    /// air is replaced with.
    fn is_watched_for_blank_air(self) -> bool {
        matches!(
            self,
            SegmentKind::Talk | SegmentKind::Speak | SegmentKind::StationId | SegmentKind::CallHost
        )
    }

    /// Whose words its captions are.
    pub fn speaker(self) -> Speaker {
        if self == SegmentKind::Caller {
            Speaker::Caller
        } else {
            Speaker::Host
        }
    }
}

/// Where a segment is in its life, as [`QueuedSegment::progress`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Waiting,
    OnAir,
    Ended,
}

enum Piece {
    Sentence(String),
    Audio(Vec<i16>),
    /// Deliberate silence of this many samples (captions with no voice left to say them):
    /// it airs as silence, and is not blank air.
    Pause(usize),
}

/// What one [`QueuedSegment::pull`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// Samples copied.
    pub samples: usize,
    /// The segment has ended (finished, and all of it pulled).
    pub ended: bool,
    /// Some of the samples were a deliberate pause.
    pub paused: bool,
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
    progress: tokio::sync::watch::Sender<Progress>,
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
            progress: tokio::sync::watch::Sender::new(Progress::Waiting),
        })
    }

    /// Where it is: waiting, on air, or ended (aired, or cut short).
    pub fn progress(&self) -> tokio::sync::watch::Receiver<Progress> {
        self.progress.subscribe()
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

    /// Appends `samples` of deliberate silence: time for captions that no voice says.
    pub fn push_pause(&self, samples: usize) {
        if samples == 0 {
            return;
        }
        let mut q = lock(&self.audio);
        q.buffered += samples;
        q.produced += samples;
        q.pieces.push_back(Piece::Pause(samples));
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

    /// Copies up to `out.len()` samples; returns how many, whether the segment has ended
    /// and whether any were a deliberate pause; the sentences that start within them go to
    /// `captions` (with their sample offset).
    pub fn pull(&self, out: &mut [i16], captions: &mut Vec<(usize, String)>) -> Pulled {
        let mut guard = lock(&self.audio);
        let q = &mut *guard;
        let mut filled = 0;
        let mut paused = false;
        while filled < out.len() {
            let len = match q.pieces.front() {
                None => break,
                Some(Piece::Sentence(_)) => {
                    if let Some(Piece::Sentence(text)) = q.pieces.pop_front() {
                        captions.push((filled, text));
                    }
                    continue;
                }
                Some(Piece::Audio(samples)) => {
                    let start = q.offset;
                    let n = (samples.len() - start).min(out.len() - filled);
                    out[filled..filled + n].copy_from_slice(&samples[start..start + n]);
                    samples.len()
                }
                Some(Piece::Pause(len)) => {
                    let n = (len - q.offset).min(out.len() - filled);
                    out[filled..filled + n].fill(0);
                    paused = true;
                    *len
                }
            };
            let n = (len - q.offset).min(out.len() - filled);
            filled += n;
            q.buffered -= n;
            if q.offset + n == len {
                q.offset = 0;
                q.pieces.pop_front();
            } else {
                q.offset += n;
            }
        }
        let ended = q.finished && q.pieces.is_empty();
        drop(guard);
        Pulled {
            samples: filled,
            ended,
            paused,
        }
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

    /// Adds a call's segments, in order, to air after the current segment and the studio
    /// segments waiting, before the programme's own; returns how many segments air before
    /// them.
    pub fn push_call(&self, segments: Vec<Arc<QueuedSegment>>) -> usize {
        lock(&self.inner).insert_after_studio(segments)
    }

    /// Queues a studio segment, `Next` (after the studio segments waiting) or `Now` (cut in),
    /// unless `limit` studio segments wait already; returns how many segments air before it,
    /// or `None` when the queue is full. The count and the insertion are one critical
    /// section, so concurrent requests cannot together overshoot the limit.
    pub fn push_speak(
        &self,
        segment: Arc<QueuedSegment>,
        mode: SpeakMode,
        limit: usize,
    ) -> Option<usize> {
        let mut inner = lock(&self.inner);
        let waiting = inner
            .cut_in
            .iter()
            .chain(inner.queue.iter())
            .filter(|s| s.kind == SegmentKind::Speak)
            .count();
        if waiting >= limit {
            return None;
        }
        Some(match mode {
            SpeakMode::Now => {
                inner.cut_in(segment);
                0
            }
            SpeakMode::Next => inner.insert_after_studio(vec![segment]),
        })
    }

    /// Cuts the current segment short as soon as `segment` has audio.
    pub fn cut_in(&self, segment: Arc<QueuedSegment>) {
        lock(&self.inner).cut_in(segment);
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

impl RundownInner {
    /// See [`Rundown::push_call`].
    fn insert_after_studio(&mut self, segments: Vec<Arc<QueuedSegment>>) -> usize {
        let at = self
            .queue
            .iter()
            .position(|s| {
                !matches!(
                    s.kind,
                    SegmentKind::Speak | SegmentKind::Caller | SegmentKind::CallHost
                )
            })
            .unwrap_or(self.queue.len());
        for (i, segment) in segments.into_iter().enumerate() {
            self.queue.insert(at + i, segment);
        }
        at + usize::from(self.on_air.is_some()) + usize::from(self.cut_in.is_some())
    }

    /// See [`Rundown::cut_in`].
    fn cut_in(&mut self, segment: Arc<QueuedSegment>) {
        if let Some(previous) = self.cut_in.replace(segment) {
            // A newer `now` wins; the older one still airs, next.
            self.queue.push_front(previous);
        }
    }
}

/// When the output is blank air (settings `audio.blank_air_dbfs`, `audio.blank_air_secs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlankAir {
    /// A frame quieter than this (RMS, dBFS) is blank.
    pub threshold_dbfs: f64,
    /// A watched segment blank for longer than this (programme time) is cut for the filler.
    pub after: Duration,
}

impl Default for BlankAir {
    /// −40 dBFS for more than 2 s.
    fn default() -> Self {
        Self {
            threshold_dbfs: -40.0,
            after: Duration::from_secs(2),
        }
    }
}

impl BlankAir {
    /// Blank frames in a row that make blank air: the first frame past [`BlankAir::after`].
    fn frames(&self) -> u64 {
        (self.after.as_nanos() / FRAME_DURATION.as_nanos()) as u64 + 1
    }

    /// The mean square of a frame at the threshold (full scale is 32 768).
    fn mean_square(&self) -> f64 {
        (32_768.0 * 10f64.powf(self.threshold_dbfs / 20.0)).powi(2)
    }
}

/// Whether `frame`'s RMS is below the level whose mean square is `threshold`.
fn is_blank(frame: &[i16], threshold: f64) -> bool {
    let sum: f64 = frame.iter().map(|s| f64::from(*s).powi(2)).sum();
    sum < threshold * frame.len() as f64
}

/// Counters of what the playout did.
#[derive(Default)]
pub struct PlayoutStats {
    pub frames: AtomicU64,
    pub dead_air_frames: AtomicU64,
    pub segments: AtomicU64,
    pub fillers: AtomicU64,
    /// Segments cut for the filler because they aired blank (see [`BlankAir`]).
    pub blank_air: AtomicU64,
    /// Ticks that came more than [`LATE_TICK`] (real time) after their frame was due.
    pub late_ticks: AtomicU64,
    /// Frames of programme never rendered because the playout fell more than
    /// [`MAX_CATCH_UP`] of programme behind.
    pub skipped_frames: AtomicU64,
    gaps: Mutex<GapLog>,
    lateness: Mutex<Option<Histogram<u64>>>,
    /// The latest tick so far, exactly (the histogram rounds).
    max_lateness_micros: AtomicU64,
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

    /// Records how late (real time) a tick came after its frame was due.
    fn record_lateness(&self, late: Duration) {
        if late > LATE_TICK {
            self.late_ticks.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        self.max_lateness_micros
            .fetch_max(micros, Ordering::Relaxed);
        let mut histogram = lock(&self.lateness);
        if histogram.is_none() {
            // Microseconds up to an hour, to two significant figures (1 % resolution).
            *histogram = Histogram::new_with_bounds(1, 3_600_000_000, 2).ok();
        }
        if let Some(histogram) = histogram.as_mut() {
            // Saturates at the top of the range rather than failing.
            histogram.saturating_record(micros);
        }
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

    /// How well the frame clock kept time since the playout started.
    pub fn timing(&self) -> PlayoutTiming {
        let lateness = lock(&self.lateness);
        let ms = |micros: u64| (micros as f64 / 100.0).round() / 10.0;
        let (p50, p99) = lateness.as_ref().map_or((0, 0), |h| {
            (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
        });
        let max = self.max_lateness_micros.load(Ordering::Relaxed);
        PlayoutTiming {
            frames: self.frames.load(Ordering::Relaxed),
            late_ticks: self.late_ticks.load(Ordering::Relaxed),
            skipped_frames: self.skipped_frames.load(Ordering::Relaxed),
            lateness_ms: Lateness {
                p50: ms(p50),
                p99: ms(p99),
                max: ms(max),
            },
        }
    }
}

/// Makes a filler segment when nothing else is ready.
pub trait FillerSource: Send + Sync + 'static {
    fn filler(&self) -> Arc<QueuedSegment>;
}

/// A running playout; dropping it stops the frame clock.
pub struct Playout {
    pub rundown: Arc<Rundown>,
    pub stats: Arc<PlayoutStats>,
    frames: broadcast::Sender<Arc<[i16]>>,
    stop: Arc<StopFlag>,
    /// The frame clock's thread, joined by [`Playout::finish`].
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Stops the frame clock when the runtime that started the playout shuts down (as a
    /// task of that runtime would be), even if this handle is never dropped.
    runtime_guard: JoinHandle<()>,
}

impl Drop for Playout {
    fn drop(&mut self) {
        self.stop.raise();
        self.runtime_guard.abort();
    }
}

/// Tells the frame clock's thread to stop, and wakes it if it sleeps.
struct StopFlag {
    raised: AtomicBool,
    /// Set before `raised` by [`Playout::finish`]: the clock renders one last frame, faded
    /// out, before it stops.
    fade_out: AtomicBool,
    thread: Mutex<Option<std::thread::Thread>>,
}

impl StopFlag {
    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        if let Some(thread) = lock(&self.thread).as_ref() {
            thread.unpark();
        }
    }

    fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }
}

/// Raises the flag when dropped: held by a task, it stops the thread with the runtime.
struct RaiseOnDrop(Arc<StopFlag>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}

impl Playout {
    /// Starts the channel's frame clock on a thread of its own, so that nothing else the
    /// process does (producers, encoders, HTTP, a test's own work) can delay a frame. Must
    /// be called inside a tokio runtime: the playout stops when that runtime shuts down.
    /// Blank air is watched for with the defaults ([`Playout::spawn_watching`] sets them).
    pub fn spawn(
        channel: ChannelName,
        clock: Arc<dyn Clock>,
        events: broadcast::Sender<HostEvent>,
        filler: Arc<dyn FillerSource>,
    ) -> std::io::Result<Self> {
        Self::spawn_watching(channel, clock, events, filler, BlankAir::default())
    }

    /// [`Playout::spawn`], with `blank_air` saying when the output is blank air.
    pub fn spawn_watching(
        channel: ChannelName,
        clock: Arc<dyn Clock>,
        events: broadcast::Sender<HostEvent>,
        filler: Arc<dyn FillerSource>,
        blank_air: BlankAir,
    ) -> std::io::Result<Self> {
        let (playout, engine) = Self::new(channel, events, filler, blank_air);
        let stop = playout.stop.clone();
        let thread = std::thread::Builder::new()
            .name("playout".into())
            .spawn(move || pace(engine, clock.as_ref(), &stop))?;
        *lock(&playout.stop.thread) = Some(thread.thread().clone());
        if playout.stop.is_raised() {
            thread.thread().unpark();
        }
        *lock(&playout.thread) = Some(thread);
        Ok(playout)
    }

    /// A playout and its engine, not yet running (the tests drive the engine by hand).
    fn new(
        channel: ChannelName,
        events: broadcast::Sender<HostEvent>,
        filler: Arc<dyn FillerSource>,
        blank_air: BlankAir,
    ) -> (Self, Engine) {
        crate::metrics::playout_started(&channel);
        let rundown = Arc::new(Rundown::default());
        let stats = Arc::new(PlayoutStats::default());
        let (frames, _) = broadcast::channel(SINK_BUFFER);
        let stop = Arc::new(StopFlag {
            raised: AtomicBool::new(false),
            fade_out: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let guard = RaiseOnDrop(stop.clone());
        let runtime_guard = tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        let engine = Engine {
            channel,
            events,
            filler,
            rundown: rundown.clone(),
            stats: stats.clone(),
            frames: frames.clone(),
            current: None,
            fading: Vec::new(),
            gap_frames: 0,
            blank_air,
            blank_threshold: blank_air.mean_square(),
            blank_frames: 0,
        };
        let playout = Self {
            rundown,
            stats,
            frames,
            stop,
            thread: Mutex::new(None),
            runtime_guard,
        };
        (playout, engine)
    }

    /// Attaches a sink: it receives every frame from now on (and misses frames if it falls
    /// more than a second behind).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[i16]>> {
        self.frames.subscribe()
    }

    /// Stops the frame clock at shutdown: it renders one more frame, faded out over its
    /// 20 ms so the programme ends without a click, sends it to the sinks, and stops. Returns
    /// when its thread has ended (at once when it had already stopped).
    pub async fn finish(&self) {
        self.stop.fade_out.store(true, Ordering::Release);
        self.stop.raise();
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!("the frame clock's thread ended badly at shutdown");
            }
        }
    }
}

/// The frame clock: renders a frame every 20 ms of the clock's time, paced by the
/// monotonic clock of this machine (so a step of the wall clock neither stalls nor rushes
/// the programme), until `stop` is raised.
fn pace(mut engine: Engine, clock: &dyn Clock, stop: &StopFlag) {
    let mut pacer = Pacer::new(clock.now(), Instant::now(), clock.speed());
    tracing::debug!(channel = %engine.channel, speed = clock.speed(), "frame clock started");
    while !stop.is_raised() {
        let due = pacer.due_real();
        loop {
            let now = Instant::now();
            if now >= due || stop.is_raised() {
                break;
            }
            // Woken early by `stop`, or spuriously: look again.
            std::thread::park_timeout(due - now);
        }
        if stop.is_raised() {
            break;
        }
        let tick = pacer.tick(Instant::now(), clock.now());
        engine.stats.record_lateness(tick.late);
        if tick.skipped > 0 {
            engine
                .stats
                .skipped_frames
                .fetch_add(tick.skipped, Ordering::Relaxed);
            tracing::warn!(
                channel = %engine.channel,
                late_ms = tick.late.as_millis() as u64,
                skipped_frames = tick.skipped,
                "playout stalled; skipping ahead"
            );
        }
        if let Some(step) = tick.clock_step {
            tracing::warn!(
                channel = %engine.channel,
                step_ms = step.num_milliseconds(),
                "the clock stepped; the programme follows it"
            );
        }
        engine.tick(tick.at);
    }
    if stop.fade_out.load(Ordering::Acquire) {
        engine.fade_out(pacer.next_at());
    }
    tracing::debug!(channel = %engine.channel, "frame clock stopped");
}

/// When each frame is due, in real time and on the programme clock.
#[derive(Debug)]
struct Pacer {
    /// A moment on the programme clock and the real instant it was read at.
    anchor: DateTime<Utc>,
    anchor_real: Instant,
    speed: f64,
    /// Frames since the anchor: the next frame starts at `anchor + frame × 20 ms`.
    frame: u64,
}

/// What the frame clock does on one tick.
#[derive(Debug, PartialEq)]
struct Tick {
    /// The programme time the frame starts at.
    at: DateTime<Utc>,
    /// How long after the frame was due (real time) the tick came.
    late: Duration,
    /// Frames skipped before this one, because the tick came more than [`MAX_CATCH_UP`] of
    /// programme late.
    skipped: u64,
    /// The programme clock moved by this much against the machine's (and was followed).
    clock_step: Option<chrono::Duration>,
}

impl Pacer {
    fn new(anchor: DateTime<Utc>, anchor_real: Instant, speed: f64) -> Self {
        Self {
            anchor,
            anchor_real,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
            frame: 0,
        }
    }

    /// Real time between two frames (at least a nanosecond).
    fn frame_real(&self) -> Duration {
        FRAME_DURATION
            .div_f64(self.speed)
            .max(Duration::from_nanos(1))
    }

    /// The real instant the next frame is due.
    fn due_real(&self) -> Instant {
        let nanos = u128::from(self.frame) * self.frame_real().as_nanos();
        self.anchor_real + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The programme time the next frame starts at.
    fn next_at(&self) -> DateTime<Utc> {
        self.anchor + frame_offset(self.frame)
    }

    /// The next frame, for a tick at `now` when the programme clock reads `clock_now`.
    fn tick(&mut self, now: Instant, clock_now: DateTime<Utc>) -> Tick {
        let late = now.saturating_duration_since(self.due_real());
        // Where the programme clock should be by our count; a difference past the limit is
        // the clock itself moving (a wall clock set by hand or by NTP), not lateness.
        let expected = self.anchor
            + chrono::Duration::from_std(
                now.saturating_duration_since(self.anchor_real)
                    .mul_f64(self.speed),
            )
            .unwrap_or_default();
        let step = clock_now - expected;
        let mut clock_step = None;
        let mut skipped = 0;
        if step.abs() > MAX_CLOCK_STEP {
            clock_step = Some(step);
            self.anchor = clock_now;
            self.anchor_real = now;
            self.frame = 0;
        } else if late.mul_f64(self.speed) > MAX_CATCH_UP {
            // Catch up to the frame due now, rather than bursting seconds of frames.
            skipped =
                u64::try_from(late.as_nanos() / self.frame_real().as_nanos()).unwrap_or(u64::MAX);
            self.frame += skipped;
        }
        let at = self.anchor + frame_offset(self.frame);
        self.frame += 1;
        Tick {
            at,
            late,
            skipped,
            clock_step,
        }
    }
}

/// Scales `samples` by a ramp from 1 at the first sample to 0 at the last.
fn fade_to_silence(samples: &mut [i16]) {
    let steps = samples.len().saturating_sub(1).max(1) as f32;
    for (i, sample) in samples.iter_mut().enumerate() {
        let gain = 1.0 - i as f32 / steps;
        *sample = (f32::from(*sample) * gain).round() as i16;
    }
}

/// Programme time from the anchor to the start of frame `n`.
fn frame_offset(n: u64) -> chrono::Duration {
    let micros = FRAME_DURATION.as_micros() as i64;
    chrono::Duration::microseconds(i64::try_from(n).unwrap_or(i64::MAX / micros) * micros)
}

struct OnAir {
    segment: Arc<QueuedSegment>,
    caption_index: u32,
}

/// Renders the channel's output one frame at a time; knows nothing of time but the start
/// of the frame it is given.
struct Engine {
    channel: ChannelName,
    events: broadcast::Sender<HostEvent>,
    filler: Arc<dyn FillerSource>,
    rundown: Arc<Rundown>,
    stats: Arc<PlayoutStats>,
    frames: broadcast::Sender<Arc<[i16]>>,
    current: Option<OnAir>,
    /// The tail of a segment that was cut, faded out and mixed under the next frames.
    fading: Vec<i16>,
    gap_frames: u64,
    blank_air: BlankAir,
    /// [`BlankAir::mean_square`], computed once.
    blank_threshold: f64,
    /// Blank frames in a row of the segment on air.
    blank_frames: u64,
}

impl Engine {
    /// Renders the frame that starts at `at` and sends it to the sinks.
    fn tick(&mut self, at: DateTime<Utc>) {
        let out = self.render(at);
        // No sink attached is normal: the programme runs anyway.
        let _ = self.frames.send(out.into());
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the frame that starts at `at` with a linear fade to silence across it, and
    /// sends it: the last frame before the playout stops.
    fn fade_out(&mut self, at: DateTime<Utc>) {
        let mut out = self.render(at);
        fade_to_silence(&mut out);
        let _ = self.frames.send(out.into());
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
    }

    fn start(&mut self, segment: Arc<QueuedSegment>, at: DateTime<Utc>) {
        *lock(&segment.started_at) = Some(at);
        segment.progress.send_replace(Progress::OnAir);
        let meta = segment.describe();
        crate::metrics::segment_aired(&self.channel, segment.kind);
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
            on_air.segment.progress.send_replace(Progress::Ended);
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
                let pulled = on_air.segment.pull(&mut tail, &mut ignored);
                tail.truncate(pulled.samples);
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
        let mut paused = false;
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
            let Pulled {
                samples: n,
                ended,
                paused: pause,
            } = segment.pull(&mut out[filled..], &mut captions);
            paused |= pause;
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
                        speaker: segment.kind.speaker(),
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
            crate::metrics::dead_air(&self.channel, FRAME_DURATION);
            self.gap_frames += 1;
        } else if self.gap_frames > 0 {
            self.stats.record_gap(self.gap_frames);
            crate::metrics::gap(&self.channel);
            self.gap_frames = 0;
        }
        self.watch_for_blank_air(&out, dead || paused, frame_start);
        out
    }

    /// Counts blank frames of the segment on air (a frame partly dead air or a deliberate
    /// pause is not blank air, and breaks the run); past [`BlankAir::after`] of them the
    /// segment is cut and the filler airs from the next frame, which starts at
    /// `frame_start` + 20 ms.
    fn watch_for_blank_air(&mut self, frame: &[i16], excused: bool, frame_start: DateTime<Utc>) {
        let watched = self
            .current
            .as_ref()
            .is_some_and(|on_air| on_air.segment.kind.is_watched_for_blank_air());
        if excused || !watched || !is_blank(frame, self.blank_threshold) {
            self.blank_frames = 0;
            return;
        }
        self.blank_frames += 1;
        if self.blank_frames < self.blank_air.frames() {
            return;
        }
        self.blank_frames = 0;
        if let Some(on_air) = &self.current {
            let segment = &on_air.segment;
            tracing::warn!(
                channel = %self.channel,
                segment_id = %segment.meta.id,
                kind = ?segment.kind,
                voice = %segment.voice(),
                threshold_dbfs = self.blank_air.threshold_dbfs,
                blank_secs = self.blank_air.after.as_secs_f64(),
                "blank air: the segment stayed below the threshold; airing the filler instead of the rest"
            );
        }
        self.stats.blank_air.fetch_add(1, Ordering::Relaxed);
        crate::metrics::blank_air(&self.channel);
        self.end(true);
        let next_frame = frame_start + frame_offset(1);
        let filler = self.filler.filler();
        self.start(filler, next_frame);
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::host::clock::ScaledClock;

    #[test]
    fn the_last_frame_fades_from_full_to_silence() {
        let mut frame = vec![10_000i16; FRAME];
        fade_to_silence(&mut frame);
        assert_eq!(frame[0], 10_000);
        assert_eq!(frame[FRAME - 1], 0);
        assert!(
            frame.windows(2).all(|w| w[1] <= w[0]),
            "the gain only falls"
        );
        // No step bigger than the ramp's: the fade itself makes no click.
        assert!(frame.windows(2).all(|w| w[0] - w[1] <= 11));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finish_sends_one_faded_frame_and_ends_the_clock() {
        let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(Utc::now(), 1.0));
        let (events, _) = broadcast::channel(16);
        // A steady level (10 s of it), so that only a fade brings the frame's end to zero.
        struct Steady;
        impl FillerSource for Steady {
            fn filler(&self) -> Arc<QueuedSegment> {
                let seg = QueuedSegment::new(meta("ID"), SegmentKind::Filler, "station", "hum");
                seg.push_sentence("Radio24");
                seg.push_audio(vec![8_000; RATE as usize * 10]);
                seg.finish();
                seg
            }
        }
        let channel = ChannelName::parse("radio24").unwrap();
        let playout = Playout::spawn(channel, clock, events, Arc::new(Steady)).unwrap();
        let mut frames = playout.subscribe();
        frames.recv().await.unwrap();
        playout.finish().await;
        let mut last = None;
        while let Ok(frame) = frames.try_recv() {
            last = Some(frame);
        }
        let last = last.expect("a frame after finish");
        assert_eq!(last.len(), FRAME);
        assert!(
            last[0] > 7_000,
            "the faded frame starts at the level: {}",
            last[0]
        );
        assert_eq!(last[FRAME - 1], 0, "the last frame ends in silence");
        assert!(
            last.windows(2).all(|w| w[1] <= w[0]),
            "and falls all the way"
        );
        assert!(playout.thread.lock().unwrap().is_none());
        assert!(frames.try_recv().is_err(), "nothing after the faded frame");
    }

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

    fn origin() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T00:00:00Z")
            .unwrap()
            .to_utc()
    }

    /// A playout whose engine the test ticks by hand, frame by frame: what it renders does
    /// not depend on how busy the machine is.
    struct ByHand {
        playout: Playout,
        engine: Engine,
        at: DateTime<Utc>,
        events: broadcast::Receiver<HostEvent>,
        frames: broadcast::Receiver<Arc<[i16]>>,
    }

    impl ByHand {
        fn new() -> Self {
            Self::on("radio24")
        }

        /// A playout of `channel` (tests that read the process-wide metrics use their own).
        fn on(channel: &str) -> Self {
            let (events_tx, events) = broadcast::channel(4096);
            let (playout, engine) = Playout::new(
                ChannelName::parse(channel).unwrap(),
                events_tx,
                Arc::new(Chime),
                BlankAir::default(),
            );
            let frames = playout.subscribe();
            Self {
                playout,
                engine,
                at: origin(),
                events,
                frames,
            }
        }

        /// Renders `n` frames; returns the events they sent.
        fn tick(&mut self, n: usize) -> Vec<HostEvent> {
            for _ in 0..n {
                self.engine.tick(self.at);
                self.at += frame_offset(1);
                // Keep the sink's buffer from overflowing; tests read frames through `frame`.
                while self.frames.len() > SINK_BUFFER / 2 {
                    let _ = self.frames.try_recv();
                }
            }
            std::iter::from_fn(|| self.events.try_recv().ok()).collect()
        }

        /// Ticks until `done` finds its event (at most `limit` frames); returns the frames
        /// ticked and the event.
        fn tick_until(
            &mut self,
            limit: usize,
            done: impl Fn(&HostEvent) -> bool,
        ) -> (usize, HostEvent) {
            for n in 1..=limit {
                if let Some(event) = self.tick(1).into_iter().find(&done) {
                    return (n, event);
                }
            }
            panic!("no such event within {limit} frames");
        }

        fn started(id: Uuid) -> impl Fn(&HostEvent) -> bool {
            move |e| matches!(e, HostEvent::SegmentStarted { segment, .. } if segment.id == id)
        }

        fn ended(id: Uuid) -> impl Fn(&HostEvent) -> bool {
            move |e| matches!(e, HostEvent::SegmentEnded { segment_id, .. } if *segment_id == id)
        }
    }

    #[tokio::test]
    async fn with_nothing_ready_a_filler_airs_not_silence() {
        let mut p = ByHand::new();
        let events = p.tick(1);
        match &events[0] {
            HostEvent::SegmentStarted { segment, .. } => assert_eq!(segment.text, "ID"),
            other => panic!("{other:?}"),
        }
        let frame = p.frames.try_recv().unwrap();
        assert_eq!(frame.len(), FRAME);
        assert!(frame.iter().all(|s| *s == 1));
        // One second: each filler lasts 200 ms.
        p.tick(49);
        assert_eq!(p.playout.stats.fillers.load(Ordering::Relaxed), 5);
        assert_eq!(p.playout.stats.frames.load(Ordering::Relaxed), 50);
        assert_eq!(p.playout.stats.dead_air_frames.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn captions_air_with_the_first_sample_of_their_sentence() {
        let mut p = ByHand::new();
        let seg = QueuedSegment::new(meta("One. Two."), SegmentKind::Talk, "template", "test");
        seg.push_sentence("One.");
        seg.push_audio(vec![7; RATE as usize]); // 1 s
        seg.push_sentence("Two.");
        seg.push_audio(vec![9; RATE as usize / 2]);
        seg.finish();
        let id = seg.meta.id;
        p.playout.rundown.push_back(seg);
        let mut events = Vec::new();
        while !events.iter().any(ByHand::ended(id)) {
            events.extend(p.tick(1));
            assert!(events.len() < 1000, "the segment never ended: {events:?}");
        }
        let started = events
            .iter()
            .find_map(|e| match e {
                HostEvent::SegmentStarted { segment, .. } if segment.id == id => segment.started_at,
                _ => None,
            })
            .unwrap();
        let captions: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                HostEvent::Caption {
                    segment_id,
                    index,
                    text,
                    at,
                    ..
                } if *segment_id == id => Some((*index, text.as_str(), *at)),
                _ => None,
            })
            .collect();
        assert_eq!(captions.len(), 2);
        assert_eq!((captions[0].0, captions[0].1), (0, "One."));
        assert_eq!(captions[0].2, started);
        assert_eq!((captions[1].0, captions[1].1), (1, "Two."));
        assert_eq!(captions[1].2 - started, chrono::Duration::seconds(1));
        assert!(events.iter().any(|e| matches!(
            e,
            HostEvent::SegmentEnded { segment_id, interrupted: false, .. } if *segment_id == id
        )));
        assert_eq!(p.playout.stats.dead_air_frames.load(Ordering::Relaxed), 0);
    }

    /// Airs a segment whose first two frames are ready and whose last comes after 10 frames
    /// (200 ms) with nothing to play: one gap of 200 ms dead air.
    fn air_a_segment_whose_audio_comes_200ms_late(p: &mut ByHand) {
        let seg = QueuedSegment::new(meta("slow"), SegmentKind::Talk, "template", "test");
        seg.push_sentence("slow");
        seg.push_audio(vec![5; FRAME * 2]);
        let id = seg.meta.id;
        p.playout.rundown.push_back(seg.clone());
        p.tick_until(100, ByHand::started(id));
        // Its two frames air (the first with the start), then 10 frames have nothing to
        // play; then the rest arrives.
        p.tick(11);
        seg.push_audio(vec![5; FRAME]);
        seg.finish();
        p.tick_until(10, ByHand::ended(id));
    }

    #[tokio::test]
    async fn audio_that_arrives_late_is_dead_air_and_a_gap() {
        let mut p = ByHand::new();
        air_a_segment_whose_audio_comes_200ms_late(&mut p);
        let gaps = p.playout.stats.gaps();
        assert_eq!(gaps.count, 1);
        assert_eq!(gaps.max_ms, 200, "{gaps:?}");
        assert!((gaps.dead_air_secs - 0.2).abs() < 1e-9, "{gaps:?}");
    }

    #[tokio::test]
    async fn segments_gaps_and_dead_air_are_in_the_metrics() {
        let metrics = crate::metrics::install();
        let mut p = ByHand::on("playout-metrics");
        air_a_segment_whose_audio_comes_200ms_late(&mut p);
        let text = metrics.render();
        for line in [
            r#"radio24_segments_aired_total{channel="playout-metrics",kind="talk"} 1"#,
            r#"radio24_gaps_total{channel="playout-metrics"} 1"#,
            r#"radio24_dead_air_milliseconds_total{channel="playout-metrics"} 200"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn a_now_segment_cuts_in_on_the_frame_after_its_audio_arrives() {
        let mut p = ByHand::new();
        let long = QueuedSegment::new(meta("long"), SegmentKind::Talk, "template", "test");
        long.push_sentence("long");
        long.push_audio(vec![3; RATE as usize * 60]);
        long.finish();
        let long_id = long.meta.id;
        p.playout.rundown.push_back(long);
        p.tick_until(100, ByHand::started(long_id));
        let urgent = QueuedSegment::new(meta("now"), SegmentKind::Speak, "studio", "test");
        let urgent_id = urgent.meta.id;
        p.playout.rundown.cut_in(urgent.clone());
        // Not yet: it has no audio, so the long segment goes on.
        p.tick(5);
        let on_air = p.playout.rundown.snapshot().0.map(|s| s.meta.id);
        assert_eq!(on_air, Some(long_id));
        urgent.push_sentence("now");
        urgent.push_audio(vec![20_000; RATE as usize]);
        urgent.finish();
        while p.frames.try_recv().is_ok() {}
        let events = p.tick(1);
        assert!(
            events.iter().any(|e| matches!(
                e,
                HostEvent::SegmentEnded { segment_id, interrupted: true, .. } if *segment_id == long_id
            )),
            "{events:?}"
        );
        assert!(events.iter().any(ByHand::started(urgent_id)), "{events:?}");
        // That frame carries the new segment's audio, with the old one fading under it.
        let frame = p.frames.try_recv().unwrap();
        assert!(frame.iter().all(|s| *s >= 20_000), "{:?}", &frame[..4]);
    }

    /// A level `dbfs` below full scale, as a constant sample value (its RMS is itself).
    fn level(dbfs: f64) -> i16 {
        (32_768.0 * 10f64.powf(dbfs / 20.0)).round() as i16
    }

    /// A finished segment of `kind` whose one sentence is `secs` of `sample`.
    fn steady(kind: SegmentKind, sample: i16, secs: f64) -> Arc<QueuedSegment> {
        let seg = QueuedSegment::new(meta("steady"), kind, "template", "test");
        seg.push_sentence("steady");
        seg.push_audio(vec![sample; (secs * f64::from(RATE)) as usize]);
        seg.finish();
        seg
    }

    #[tokio::test]
    async fn a_blank_spoken_segment_is_cut_for_the_filler_after_two_seconds() {
        let mut p = ByHand::on("playout-blank");
        let metrics = crate::metrics::install();
        // Just under −40 dBFS: blank.
        let seg = steady(SegmentKind::Talk, level(-41.0), 10.0);
        let id = seg.meta.id;
        p.playout.rundown.push_back(seg);
        p.tick_until(100, ByHand::started(id));
        let ((frames, _), log) =
            crate::telemetry::capture::logged(|| p.tick_until(500, ByHand::ended(id)));
        // Two seconds is 100 frames; the first frame past them (counting the starting one)
        // ends it.
        assert_eq!(frames, 100, "ended after {frames} more frames");
        // The filler took its place at once.
        let on_air = p.playout.rundown.snapshot().0.unwrap();
        assert_eq!(
            (on_air.kind, on_air.meta.text.as_str()),
            (SegmentKind::Filler, "ID")
        );
        assert_eq!(p.playout.stats.blank_air.load(Ordering::Relaxed), 1);
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("blank air"), "{log}");
        assert!(log.contains("channel=playout-blank"), "{log}");
        assert!(log.contains(&id.to_string()), "{log}");
        let text = metrics.render();
        let line = r#"radio24_blank_air_total{channel="playout-blank"} 1"#;
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }

    #[tokio::test]
    async fn quiet_speech_pauses_music_and_callers_are_not_blank_air() {
        let mut p = ByHand::new();
        let mut ids = Vec::new();
        // Just over −40 dBFS: quiet, not blank.
        for seg in [
            steady(SegmentKind::Talk, level(-39.0), 3.0),
            steady(SegmentKind::Music, 0, 3.0),
            steady(SegmentKind::Caller, 0, 3.0),
        ] {
            ids.push(seg.meta.id);
            p.playout.rundown.push_back(seg);
        }
        // Captions with no voice: a deliberate pause.
        let pause = QueuedSegment::new(meta("unvoiced"), SegmentKind::Talk, "template", "captions");
        pause.push_sentence("unvoiced");
        pause.push_pause(RATE as usize * 3);
        pause.finish();
        ids.push(pause.meta.id);
        p.playout.rundown.push_back(pause);
        let mut events = Vec::new();
        for _ in 0..1000 {
            events.extend(p.tick(1));
            if events.iter().any(ByHand::ended(ids[3])) {
                break;
            }
        }
        for id in &ids {
            assert!(
                events.iter().any(|e| matches!(
                    e,
                    HostEvent::SegmentEnded { segment_id, interrupted: false, .. } if segment_id == id
                )),
                "{id} did not air whole: {events:?}"
            );
        }
        assert_eq!(p.playout.stats.blank_air.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_threshold_is_the_frame_rms() {
        let blank = BlankAir::default().mean_square();
        assert!(is_blank(&[0; FRAME], blank));
        assert!(is_blank(&[level(-40.5); FRAME], blank));
        assert!(!is_blank(&[level(-39.5); FRAME], blank));
        // A full-scale click in a silent frame: its RMS is −29.8 dBFS, not blank.
        let mut click = vec![0; FRAME];
        click[0] = i16::MAX;
        assert!(!is_blank(&click, blank));
        assert_eq!(BlankAir::default().frames(), 101);
    }

    #[test]
    fn the_pacer_counts_frames_on_the_programme_clock() {
        let real = Instant::now();
        let mut pacer = Pacer::new(origin(), real, 1.0);
        let first = pacer.tick(real, origin());
        assert_eq!(first.at, origin());
        assert_eq!(
            (first.late, first.skipped, first.clock_step),
            (Duration::ZERO, 0, None)
        );
        assert_eq!(pacer.due_real(), real + FRAME_DURATION);
        // A tick 5 ms late renders the frame that was due, and says how late it came.
        let late = pacer.tick(real + Duration::from_millis(25), origin());
        assert_eq!(late.at, origin() + chrono::Duration::milliseconds(20));
        assert_eq!(late.late, Duration::from_millis(5));
        assert_eq!(late.skipped, 0);
        // At 60× the frames come 60 times as often, each still 20 ms of programme.
        let mut fast = Pacer::new(origin(), real, 60.0);
        fast.tick(real, origin());
        assert_eq!(fast.due_real(), real + FRAME_DURATION / 60);
    }

    #[test]
    fn a_stall_past_the_limit_skips_ahead_and_a_shorter_one_catches_up() {
        let real = Instant::now();
        let mut pacer = Pacer::new(origin(), real, 1.0);
        pacer.tick(real, origin());
        // 1.5 s late: every missed frame is still rendered, one per tick, without waiting.
        let now = real + Duration::from_millis(1_520);
        let tick = pacer.tick(now, origin() + chrono::Duration::milliseconds(1_520));
        assert_eq!((tick.skipped, tick.at), (0, origin() + frame_offset(1)));
        assert!(pacer.due_real() < now);
        // 3 s late: the frames up to now are skipped, and counted.
        let mut pacer = Pacer::new(origin(), real, 1.0);
        pacer.tick(real, origin());
        let now = real + Duration::from_millis(3_020);
        let tick = pacer.tick(now, origin() + chrono::Duration::milliseconds(3_020));
        assert_eq!(tick.skipped, 150);
        assert_eq!(tick.at, origin() + frame_offset(151));
        assert_eq!(tick.late, Duration::from_millis(3_000));
        // At 10×, 300 ms of real time is 3 s of programme: skipped too.
        let mut fast = Pacer::new(origin(), real, 10.0);
        fast.tick(real, origin());
        let now = real + Duration::from_millis(302);
        let tick = fast.tick(now, origin() + chrono::Duration::milliseconds(3_020));
        assert_eq!(tick.skipped, 150);
    }

    #[test]
    fn a_step_of_the_wall_clock_is_followed_not_waited_out() {
        let real = Instant::now();
        let mut pacer = Pacer::new(origin(), real, 1.0);
        pacer.tick(real, origin());
        // The wall clock was set back an hour between two frames: the next frame is due
        // 20 ms later all the same, stamped with the new time.
        let now = real + FRAME_DURATION;
        let back = origin() - chrono::Duration::hours(1);
        let tick = pacer.tick(now, back);
        assert_eq!(tick.at, back);
        assert_eq!(tick.skipped, 0);
        assert!(
            tick.clock_step
                .is_some_and(|s| s < -chrono::Duration::minutes(59))
        );
        assert_eq!(pacer.due_real(), now + FRAME_DURATION);
    }

    #[test]
    fn lateness_is_summarised_for_operators() {
        let stats = PlayoutStats::default();
        assert_eq!(stats.timing(), PlayoutTiming::default());
        for ms in [1, 1, 1, 2, 30] {
            stats.record_lateness(Duration::from_millis(ms));
        }
        let timing = stats.timing();
        assert_eq!(timing.late_ticks, 1);
        assert_eq!(timing.lateness_ms.p50, 1.0);
        assert_eq!(timing.lateness_ms.max, 30.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_frame_clock_runs_on_its_own_thread_and_stops_with_its_playout() {
        let clock = Arc::new(ScaledClock::new(origin(), 10.0));
        let (events, _) = broadcast::channel(1024);
        let playout = Playout::spawn(
            ChannelName::parse("radio24").unwrap(),
            clock,
            events,
            Arc::new(Chime),
        )
        .unwrap();
        let mut frames = playout.subscribe();
        // Frames arrive while this runtime's only worker is blocked: they do not need it.
        std::thread::sleep(Duration::from_millis(100));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut received = 0;
        while received < 20 {
            match tokio::time::timeout_at(deadline, frames.recv()).await {
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => received += 1,
                other => panic!("frames stopped after {received}: {other:?}"),
            }
        }
        assert!(playout.stats.timing().frames >= 20);
        drop(playout);
        // The thread exits and drops its sender: the sink sees the end.
        loop {
            match tokio::time::timeout_at(deadline, frames.recv()).await {
                Ok(Err(broadcast::error::RecvError::Closed)) => break,
                Ok(_) => {}
                Err(_) => panic!("the frame clock did not stop"),
            }
        }
    }
}
