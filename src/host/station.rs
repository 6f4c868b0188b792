//! One channel on air. Its producer keeps the playout's rundown `host.lookahead_secs` ahead:
//! it plans the next segment on the programme clock, has it written (LLM, retried with
//! backoff, then the offline template writer) and voiced sentence by sentence (the chosen
//! voice, retried, then espeak-ng, then captions only), resampled to 48 kHz and normalised
//! to `audio.target_lufs`. Studio requests (`speak`) are voiced as they stream and go to
//! the front of the rundown, or cut in at once (`now`). Nothing here stops on a provider's
//! error: it is logged with its cause and the station keeps airing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::HostError;
use super::audio::dsp;
use super::audio::loudness::{LoudnessTracker, apply_gain, measured_gain, normalising_gain};
use super::audio::music;
use super::audio::music::{MusicLibrary, Track};
use super::audio::resample::Resampler;
use super::audio::{FRAME, RATE};
use super::calls::CallDesk;
use super::clock::Clock;
use super::playout::{BlankAir, FillerSource, Playout, QueuedSegment, SegmentKind};
use super::programme::{HourEnd, Plan, PlanKind, StationTime};
use super::sentences::split_sentences;
use super::voice::{Voice, VoiceAudio, VoiceError};
use super::writer::news::NewsDesk;
use super::writer::{ScriptBrief, ScriptWriter, TemplateWriter};
use crate::bus::{HostEvent, OnAir, PublisherStatus, ScheduleSlot, Segment, SpeakMode};
use crate::domain::{Block, ChannelName};
use crate::sync::lock;

/// Scripts remembered per channel so the writer does not repeat itself.
const RECENT_SCRIPTS: usize = 6;
/// How often the music folder is scanned again for new or removed tracks.
const MUSIC_RESCAN: Duration = Duration::from_secs(300);
/// Sentences of one segment voiced at the same time.
const VOICE_CONCURRENCY: usize = 4;
/// How often an idle producer looks again (clock time).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// The chime that opens the station ID, and stands in for it until the ID is rendered.
const CHIME_SECS: f64 = 0.8;
/// Longest wait between two attempts at a writer or voice: past it, the station airs the
/// fallback sooner rather than hold the segment back.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);
/// How often a channel ready for a caller says so again (real time), while it stays ready.
const CALLER_WANTED_EVERY: Duration = Duration::from_secs(2);

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub station_name: String,
    pub language: String,
    pub topics: Vec<String>,
    pub lookahead_secs: f64,
    pub segment_secs: f64,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub target_lufs: f64,
    /// Speaking rate used to time captions when there is no voice.
    pub chars_per_second: f64,
    pub max_track_secs: f64,
    pub speak_queue: usize,
    /// When the playout's output is blank air.
    pub blank_air: BlankAir,
}

/// Writes with the configured writer, retrying with backoff, then falls back to templates.
pub struct Writers {
    pub primary: Option<Arc<dyn ScriptWriter>>,
    pub fallback: TemplateWriter,
}

/// Voices sentences with the configured voice, retrying, then the fallback voice, then
/// (with no voice left) silence of the sentence's spoken length, so captions still flow.
pub struct Voices {
    pub primary: Option<Arc<dyn Voice>>,
    pub fallback: Option<Arc<dyn Voice>>,
}

impl Voices {
    /// The name of the voice in use, as `/now` shows it.
    pub fn name(&self) -> &'static str {
        self.primary
            .as_ref()
            .or(self.fallback.as_ref())
            .map_or("captions", |v| v.name())
    }
}

/// What every channel shares.
pub struct Services {
    pub clock: Arc<dyn Clock>,
    pub events: broadcast::Sender<HostEvent>,
    pub writers: Writers,
    pub voices: Voices,
    pub news: Option<NewsDesk>,
    pub music: Option<MusicLibrary>,
    /// The library's tracks as last scanned (scanning opens every file: not per segment).
    tracks: RwLock<Arc<Vec<Track>>>,
    pub time: StationTime,
    pub config: EngineConfig,
    loudness: Mutex<LoudnessTracker>,
    station_id: Mutex<Option<StationId>>,
    /// Listeners' calls: the one each channel holds, how the last ones ended, and what
    /// checks and answers them.
    pub calls: CallDesk,
}

/// The station ID: its words and its audio (chime + voice), rendered once.
#[derive(Clone)]
struct StationId {
    text: String,
    audio: Arc<Vec<i16>>,
}

impl Services {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        clock: Arc<dyn Clock>,
        events: broadcast::Sender<HostEvent>,
        writers: Writers,
        voices: Voices,
        news: Option<NewsDesk>,
        music: Option<MusicLibrary>,
        time: StationTime,
        config: EngineConfig,
        calls: CallDesk,
    ) -> Self {
        Self {
            loudness: Mutex::new(LoudnessTracker::new(config.target_lufs)),
            tracks: RwLock::new(Arc::new(Vec::new())),
            clock,
            events,
            writers,
            voices,
            news,
            music,
            time,
            config,
            station_id: Mutex::new(None),
            calls,
        }
    }

    pub fn set_tracks(&self, tracks: Vec<Track>) {
        *self.tracks.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tracks);
    }

    /// The tracks of the music library, as last scanned.
    pub fn tracks(&self) -> Arc<Vec<Track>> {
        self.tracks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rescans the music library every [`MUSIC_RESCAN`], off the async threads, for as long
    /// as the engine lives.
    pub async fn watch_music(this: Weak<Self>) {
        loop {
            tokio::time::sleep(MUSIC_RESCAN).await;
            let Some(services) = this.upgrade() else {
                return;
            };
            let Some(library) = services.music.clone() else {
                return;
            };
            let dir = library.dir().display().to_string();
            match tokio::task::spawn_blocking(move || library.scan()).await {
                Ok(tracks) => {
                    if tracks.len() != services.tracks().len() {
                        tracing::info!(tracks = tracks.len(), %dir, "music library changed");
                    }
                    services.set_tracks(tracks);
                }
                Err(e) => tracing::warn!(error = %e, "music scan failed"),
            }
        }
    }

    /// Renders and caches the station ID (called at start-up, before anything airs).
    pub async fn prepare_station_id(self: &Arc<Self>) {
        let brief = ScriptBrief {
            station: &self.config.station_name,
            block: Block::Jingle,
            topic: "",
            prompt: None,
            language: &self.config.language,
            hour: self.time.hour(self.clock.now()),
            target_secs: super::programme::STATION_ID_SECS,
            recent: &[],
            news: &[],
            caller: None,
        };
        let text = match self.writers.fallback.write(&brief).await {
            Ok(text) => text,
            Err(_) => self.config.station_name.clone(),
        };
        let segment = QueuedSegment::new(
            meta(&text, None, None, 0),
            SegmentKind::StationId,
            "template",
            "",
        );
        self.voice_text(&segment, &text, false).await;
        segment.finish();
        let mut audio = dsp::chime(CHIME_SECS);
        let mut pulled = vec![0i16; segment.buffered()];
        let n = drain(&segment, &mut pulled);
        pulled.truncate(n);
        audio.extend(pulled);
        tracing::info!(
            seconds = audio.len() as f64 / f64::from(RATE),
            "station ID ready"
        );
        *lock(&self.station_id) = Some(StationId {
            text,
            audio: Arc::new(audio),
        });
    }

    /// The station ID's words and audio; until it is rendered, no words and a chime (never
    /// nothing: a segment without audio would end as soon as it started).
    fn station_id_or_chime(&self) -> (String, Arc<Vec<i16>>) {
        match lock(&self.station_id).clone() {
            Some(id) => (id.text, id.audio),
            None => chime_alone(),
        }
    }

    /// How long [`Services::station_id_or_chime`]'s audio lasts, without rendering a chime.
    fn station_id_secs(&self) -> f64 {
        lock(&self.station_id)
            .as_ref()
            .map_or(CHIME_SECS, |id| id.audio.len() as f64 / f64::from(RATE))
    }

    /// Writes a script for `plan`: primary writer with retries, else templates.
    pub async fn write(&self, plan: &Plan, recent: &[String]) -> (String, &'static str) {
        let news = match (&self.news, plan.block) {
            (Some(desk), Block::News) => desk.headlines().await,
            _ => Vec::new(),
        };
        // Talk in a MUSIC hour has no track after it (no music library, or the hour's last
        // minutes): it is written as a TOPIC_A segment, not a lead-in to a song never played.
        let block = if plan.block == Block::Music && plan.kind != PlanKind::Music {
            Block::TopicA
        } else {
            plan.block
        };
        let brief = ScriptBrief {
            station: &self.config.station_name,
            block,
            topic: &plan.topic,
            prompt: plan.prompt.as_deref(),
            language: &self.config.language,
            hour: plan.hour,
            target_secs: plan.target_secs,
            recent,
            news: &news,
            caller: plan.caller.as_deref(),
        };
        if let Some(primary) = &self.writers.primary {
            for attempt in 0..=self.config.retries {
                match primary.write(&brief).await {
                    Ok(text) if !text.trim().is_empty() => return (text, primary.name()),
                    Ok(_) => {
                        tracing::warn!(writer = primary.name(), attempt, "writer returned nothing")
                    }
                    Err(e) => {
                        tracing::warn!(writer = primary.name(), attempt, error = %e, "writer failed")
                    }
                }
                if attempt < self.config.retries {
                    self.backoff(attempt).await;
                }
            }
            tracing::warn!(
                writer = primary.name(),
                "falling back to the template writer"
            );
        }
        let text = match self.writers.fallback.write(&brief).await {
            Ok(text) => text,
            Err(_) => self.config.station_name.clone(),
        };
        (text, self.writers.fallback.name())
    }

    /// Voices `text` sentence by sentence into `segment` (caption marker, then its audio).
    /// `stream` sends audio on as it arrives (studio requests); otherwise up to
    /// [`VOICE_CONCURRENCY`] sentences are voiced at once, each measured and normalised whole,
    /// and queued in order — so a provider's per-request latency is paid in parallel.
    pub async fn voice_text(&self, segment: &QueuedSegment, text: &str, stream: bool) {
        let sentences = split_sentences(text);
        if stream {
            for sentence in sentences {
                let used = self.stream_sentence(segment, &sentence).await;
                segment.set_voice(used);
            }
            return;
        }
        let mut rendered = futures::stream::iter(sentences)
            .map(|sentence| async move {
                let (audio, voice) = self.render_sentence(&sentence).await;
                (sentence, audio, voice)
            })
            .buffered(VOICE_CONCURRENCY);
        while let Some((sentence, audio, voice)) = rendered.next().await {
            segment.push_sentence(sentence);
            match audio {
                Rendered::Voiced(samples) => segment.push_audio(samples),
                Rendered::Pause(samples) => segment.push_pause(samples),
            }
            segment.set_voice(voice);
        }
    }

    /// The voices to try, in order, each with its number of retries.
    fn candidates(&self) -> Vec<(&Arc<dyn Voice>, u32)> {
        let mut candidates = Vec::new();
        if let Some(v) = &self.voices.primary {
            candidates.push((v, self.config.retries));
        }
        if let Some(v) = &self.voices.fallback {
            candidates.push((v, 0));
        }
        candidates
    }

    /// Waits before retry `attempt + 1` of a writer or voice.
    async fn backoff(&self, attempt: u32) {
        self.clock
            .sleep(retry_wait(self.config.retry_backoff, attempt))
            .await;
    }

    /// Samples of silence as long as `sentence` would take to say: with no voice left,
    /// captions still keep time (a deliberate pause, not blank air).
    fn pause_for(&self, sentence: &str) -> usize {
        let secs = sentence.chars().filter(|c| !c.is_whitespace()).count() as f64
            / self.config.chars_per_second;
        (secs.max(0.4) * f64::from(RATE)) as usize
    }

    /// One sentence, whole and normalised, from the first voice that manages it.
    async fn render_sentence(&self, sentence: &str) -> (Rendered, &'static str) {
        let target_lufs = lock(&self.loudness).target_lufs();
        for (voice, retries) in self.candidates() {
            for attempt in 0..=retries {
                match collect(voice.as_ref(), sentence, target_lufs).await {
                    Ok((audio, gain)) => {
                        if let Some(gain) = gain {
                            lock(&self.loudness).record(voice.name(), gain);
                        }
                        return (Rendered::Voiced(audio), voice.name());
                    }
                    Err(e) => {
                        tracing::warn!(voice = voice.name(), attempt, error = %e, "voice failed")
                    }
                }
                if attempt < retries {
                    self.backoff(attempt).await;
                }
            }
        }
        (Rendered::Pause(self.pause_for(sentence)), "captions")
    }

    /// One sentence, sent on as it arrives (with the voice's learnt gain).
    async fn stream_sentence(&self, segment: &QueuedSegment, sentence: &str) -> &'static str {
        for (voice, retries) in self.candidates() {
            for attempt in 0..=retries {
                match self.pump(voice.as_ref(), segment, sentence).await {
                    Ok(()) => return voice.name(),
                    Err(Pumped::Partial(e)) => {
                        // Some of the sentence already aired; better to move on than repeat it.
                        tracing::warn!(voice = voice.name(), error = %e, "voice broke off mid-sentence");
                        return voice.name();
                    }
                    Err(Pumped::Nothing(e)) => {
                        tracing::warn!(voice = voice.name(), attempt, error = %e, "voice failed");
                    }
                }
                if attempt < retries {
                    self.backoff(attempt).await;
                }
            }
        }
        segment.push_sentence(sentence);
        segment.push_pause(self.pause_for(sentence));
        "captions"
    }

    async fn pump(
        &self,
        voice: &dyn Voice,
        segment: &QueuedSegment,
        sentence: &str,
    ) -> Result<(), Pumped> {
        let audio = voice.synthesize(sentence).await.map_err(Pumped::Nothing)?;
        let mut resampler = Resampler::new(audio.rate)
            .map_err(|e| Pumped::Nothing(VoiceError::BadAnswer(e.to_string())))?;
        let mut chunks = audio.chunks;
        let gain = lock(&self.loudness).guess(voice.name());
        let mut aired = false;
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) if aired => return Err(Pumped::Partial(e)),
                Err(e) => return Err(Pumped::Nothing(e)),
            };
            let mut out = resampler.process(&chunk);
            if out.is_empty() {
                continue;
            }
            if !aired {
                segment.push_sentence(sentence);
                aired = true;
            }
            apply_gain(&mut out, gain);
            segment.push_audio(out);
        }
        if !aired {
            segment.push_sentence(sentence);
        }
        let mut tail = resampler.flush();
        apply_gain(&mut tail, gain);
        segment.push_audio(tail);
        Ok(())
    }
}

/// All of a voice's audio for `text`, at 48 kHz and brought to `target_lufs`, with the
/// gain that did it (`None` when the audio was too short or quiet to measure).
async fn collect(
    voice: &dyn Voice,
    text: &str,
    target_lufs: f64,
) -> Result<(Vec<i16>, Option<f64>), VoiceError> {
    normalised(voice.synthesize(text).await?, target_lufs).await
}

/// All of `audio`, at 48 kHz and brought to `target_lufs`, with the gain that did it.
pub(super) async fn normalised(
    audio: VoiceAudio,
    target_lufs: f64,
) -> Result<(Vec<i16>, Option<f64>), VoiceError> {
    let mut resampler =
        Resampler::new(audio.rate).map_err(|e| VoiceError::BadAnswer(e.to_string()))?;
    let mut chunks = audio.chunks;
    let mut raw = Vec::new();
    while let Some(chunk) = chunks.next().await {
        raw.extend(chunk?);
    }
    // Resampling and measuring a whole sentence is milliseconds of CPU (more in a debug
    // build): done on a blocking thread, so it never holds up the runtime's other tasks.
    tokio::task::spawn_blocking(move || {
        let mut whole = resampler.process(&raw);
        whole.extend(resampler.flush());
        if whole.is_empty() {
            return Err(VoiceError::BadAnswer("no audio".into()));
        }
        let gain = measured_gain(&whole, target_lufs);
        apply_gain(&mut whole, gain.unwrap_or(1.0));
        Ok((whole, gain))
    })
    .await
    .map_err(|e| VoiceError::BadAnswer(format!("audio processing failed: {e}")))?
}

/// The wait before retry `attempt + 1`: `first` doubled `attempt` times, at most
/// [`MAX_RETRY_WAIT`]. Saturating, so no `host.retries` or `retry_backoff_ms` can overflow it
/// (an overflow would panic the producer, and the clock cannot sleep past its range).
fn retry_wait(first: Duration, attempt: u32) -> Duration {
    if first.is_zero() {
        return Duration::ZERO;
    }
    2u32.checked_pow(attempt)
        .and_then(|factor| first.checked_mul(factor))
        .map_or(MAX_RETRY_WAIT, |wait| wait.min(MAX_RETRY_WAIT))
}

/// A sentence's audio: voiced, or (no voice managed it) a pause as long as its caption.
enum Rendered {
    Voiced(Vec<i16>),
    Pause(usize),
}

enum Pumped {
    /// Nothing aired: the sentence can be tried again.
    Nothing(VoiceError),
    /// Part of the sentence aired before the voice failed.
    Partial(VoiceError),
}

fn meta(text: &str, block: Option<Block>, topic: Option<String>, duration_ms: u64) -> Segment {
    Segment {
        id: Uuid::now_v7(),
        block,
        topic,
        text: text.to_owned(),
        duration_ms,
        started_at: None,
    }
}

/// Drains a finished segment's audio (used to cache the station ID).
fn drain(segment: &QueuedSegment, out: &mut [i16]) -> usize {
    let mut ignored = Vec::new();
    segment.pull(out, &mut ignored).samples
}

/// No words and the chime: what stands in for the station ID until it is rendered.
fn chime_alone() -> (String, Arc<Vec<i16>>) {
    (String::new(), Arc::new(dsp::chime(CHIME_SECS)))
}

struct Filler(Weak<Services>);

impl FillerSource for Filler {
    fn filler(&self) -> Arc<QueuedSegment> {
        let (text, audio) = match self.0.upgrade() {
            Some(services) => services.station_id_or_chime(),
            None => chime_alone(),
        };
        let segment = QueuedSegment::new(
            meta(&text, Some(Block::Jingle), None, 0),
            SegmentKind::Filler,
            "template",
            "",
        );
        if !text.is_empty() {
            segment.push_sentence(text);
        }
        segment.push_audio(audio.as_ref().clone());
        segment.finish();
        segment.set_duration_from_audio();
        segment
    }
}

/// A channel's on/off state and schedule, replaced by programme updates.
#[derive(Debug, Clone)]
pub struct ChannelState {
    pub live: bool,
    pub schedule: Vec<ScheduleSlot>,
}

/// One channel: its playout and the producer feeding it.
pub struct ChannelStation {
    pub name: ChannelName,
    state: RwLock<ChannelState>,
    pub playout: Playout,
    topic_turn: AtomicUsize,
    track_turn: AtomicUsize,
    recent: Mutex<VecDeque<String>>,
    producer: Mutex<Option<JoinHandle<()>>>,
    /// The LiveKit publisher's state, when the host publishes this channel.
    livekit: Mutex<Option<PublisherStatus>>,
    /// When the channel last said it wants a caller (real time).
    caller_wanted_at: Mutex<Option<std::time::Instant>>,
    /// The top of the hour whose closing station ID the producer has planned.
    closed_hour: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    services: Arc<Services>,
}

impl Drop for ChannelStation {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.producer).take() {
            task.abort();
        }
    }
}

impl ChannelStation {
    /// Starts the channel's playout (its frame clock thread) and producer.
    pub fn spawn(
        name: ChannelName,
        state: ChannelState,
        services: Arc<Services>,
    ) -> std::io::Result<Arc<Self>> {
        let playout = Playout::spawn_watching(
            name.clone(),
            services.clock.clone(),
            services.events.clone(),
            Arc::new(Filler(Arc::downgrade(&services))),
            services.config.blank_air,
        )?;
        let station = Arc::new(Self {
            name,
            state: RwLock::new(state),
            playout,
            topic_turn: AtomicUsize::new(0),
            track_turn: AtomicUsize::new(0),
            recent: Mutex::new(VecDeque::new()),
            producer: Mutex::new(None),
            livekit: Mutex::new(None),
            caller_wanted_at: Mutex::new(None),
            closed_hour: Mutex::new(None),
            services,
        });
        let task = tokio::spawn(produce(Arc::downgrade(&station)));
        *lock(&station.producer) = Some(task);
        Ok(station)
    }

    /// Records the LiveKit publisher's new state and tells subscribers (it is in `on_air`).
    pub fn set_livekit_status(&self, status: PublisherStatus) {
        *lock(&self.livekit) = Some(status);
        self.announce();
    }

    /// The LiveKit publisher's state; `None` when the host does not publish this channel.
    pub fn livekit_status(&self) -> Option<PublisherStatus> {
        lock(&self.livekit).clone()
    }

    pub fn set_state(&self, state: ChannelState) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    pub fn state(&self) -> ChannelState {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn next_topic(&self) -> String {
        let topics = &self.services.config.topics;
        let turn = self.topic_turn.fetch_add(1, Ordering::Relaxed);
        topics
            .get(turn % topics.len().max(1))
            .cloned()
            .unwrap_or_default()
    }

    fn recent(&self) -> Vec<String> {
        lock(&self.recent).iter().cloned().collect()
    }

    fn remember(&self, text: &str) {
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT_SCRIPTS {
            recent.pop_front();
        }
        recent.push_back(text.to_owned());
    }

    /// Plans what airs at the clock's `at`, with the next topic (or `topic`).
    pub fn plan(&self, at: chrono::DateTime<chrono::Utc>, topic: Option<String>) -> Plan {
        let state = self.state();
        let has_music = !self.services.tracks().is_empty();
        let topic = topic.unwrap_or_else(|| self.next_topic());
        let end = HourEnd {
            id_secs: self.services.station_id_secs(),
            closed: *lock(&self.closed_hour),
        };
        self.services.time.plan(
            &state.schedule,
            at,
            &topic,
            self.services.config.segment_secs,
            has_music,
            end,
        )
    }

    /// A script for `plan`, without airing it.
    pub async fn write(&self, plan: &Plan) -> (String, &'static str) {
        self.services.write(plan, &self.recent()).await
    }

    /// Queues a studio segment; returns its id and how many segments air before it.
    pub fn speak(
        self: &Arc<Self>,
        text: String,
        mode: SpeakMode,
    ) -> Result<(Uuid, usize), HostError> {
        let now = self.services.clock.now();
        let block = self
            .services
            .time
            .slot(&self.state().schedule, now)
            .map(|s| s.block);
        let estimate = split_sentences(&text)
            .iter()
            .map(|s| s.chars().count() as f64 / self.services.config.chars_per_second)
            .sum::<f64>();
        let segment = QueuedSegment::new(
            meta(&text, block, None, (estimate * 1000.0) as u64),
            SegmentKind::Speak,
            "studio",
            self.services.voices.name(),
        );
        let id = segment.meta.id;
        let limit = self.services.config.speak_queue;
        let ahead = self
            .playout
            .rundown
            .push_speak(segment.clone(), mode, limit)
            .ok_or_else(|| HostError::QueueFull {
                channel: self.name.clone(),
                limit,
            })?;
        self.announce();
        let services = self.services.clone();
        tokio::spawn(async move {
            services.voice_text(&segment, &text, true).await;
            segment.finish();
        });
        Ok((id, ahead))
    }

    /// What every channel shares (the call pipeline airs through it).
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// In a QANDA hour, with no call on, tells the API (every [`CALLER_WANTED_EVERY`]) that
    /// the channel is ready for a caller.
    fn want_caller(&self) {
        let services = &self.services;
        let state = self.state();
        if !state.live || services.calls.is_holding(&self.name) {
            return;
        }
        let block = services
            .time
            .slot(&state.schedule, services.clock.now())
            .map(|s| s.block);
        if block != Some(Block::Qanda) {
            return;
        }
        let mut last = lock(&self.caller_wanted_at);
        if last.is_some_and(|at| at.elapsed() < CALLER_WANTED_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        let _ = services.events.send(HostEvent::CallerWanted {
            channel: self.name.clone(),
        });
    }

    /// A call ended: the next `caller_wanted` goes out at once.
    pub fn call_ended(&self) {
        *lock(&self.caller_wanted_at) = None;
        self.announce();
    }

    /// Tells subscribers what is on air and next (after the rundown changed).
    pub fn announce(&self) {
        // Nobody listening is normal.
        let _ = self.services.events.send(HostEvent::OnAir {
            state: self.on_air(),
        });
    }

    /// What is on air now and next.
    pub fn on_air(&self) -> OnAir {
        let (current, next) = self.playout.rundown.snapshot();
        let block = self
            .services
            .time
            .slot(&self.state().schedule, self.services.clock.now())
            .map(|s| s.block);
        OnAir {
            channel: self.name.clone(),
            block,
            topic: current.as_ref().and_then(|s| s.meta.topic.clone()),
            segment: current.as_ref().map(|s| s.describe()),
            next: next.iter().map(|s| s.describe()).collect(),
            writer: current
                .as_ref()
                .map(|s| s.writer.clone())
                .unwrap_or_else(|| {
                    self.services
                        .writers
                        .primary
                        .as_ref()
                        .map_or("template", |w| w.name())
                        .to_owned()
                }),
            voice: current
                .as_ref()
                .map(|s| s.voice())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| self.services.voices.name().to_owned()),
            ready_ahead_secs: self.playout.rundown.ready_ahead_secs(),
            dead_air_secs: self.playout.stats.dead_air_secs(),
            playout: self.playout.stats.timing(),
            livekit: self.livekit_status().map(Box::new),
        }
    }

    /// Produces one segment for `plan` and queues it; returns how many samples of audio it
    /// has.
    async fn produce_one(&self, plan: Plan) -> usize {
        let services = &self.services;
        let segment = match plan.kind {
            PlanKind::StationId => {
                let (text, audio) = services.station_id_or_chime();
                let segment = QueuedSegment::new(
                    meta(&text, Some(plan.block), None, 0),
                    SegmentKind::StationId,
                    "template",
                    services.voices.name(),
                );
                if !text.is_empty() {
                    segment.push_sentence(text);
                }
                segment.push_audio(audio.as_ref().clone());
                segment
            }
            PlanKind::Talk | PlanKind::Music => {
                let recent = self.recent();
                let (text, writer) = services.write(&plan, &recent).await;
                self.remember(&text);
                let segment = QueuedSegment::new(
                    meta(&text, Some(plan.block), Some(plan.topic.clone()), 0),
                    if plan.kind == PlanKind::Music {
                        SegmentKind::Music
                    } else {
                        SegmentKind::Talk
                    },
                    writer,
                    services.voices.name(),
                );
                services.voice_text(&segment, &text, false).await;
                if plan.kind == PlanKind::Music {
                    self.add_track(&segment, plan.target_secs).await;
                }
                segment
            }
        };
        segment.finish();
        segment.set_duration_from_audio();
        let produced = segment.produced();
        tracing::debug!(channel = %self.name, kind = ?plan.kind, block = %plan.block, secs = produced as f64 / f64::from(RATE), "segment ready");
        self.playout.rundown.push_back(segment);
        self.announce();
        produced
    }

    async fn add_track(&self, segment: &QueuedSegment, max_secs: f64) {
        let tracks = self.services.tracks();
        if tracks.is_empty() {
            return;
        }
        let track = tracks[self.track_turn.fetch_add(1, Ordering::Relaxed) % tracks.len()].clone();
        let limit = max_secs.min(self.services.config.max_track_secs).max(1.0);
        let path = track.path.clone();
        let target_lufs = self.services.config.target_lufs;
        // Decoding, measuring and fading minutes of audio: all off the runtime's threads.
        let prepared = tokio::task::spawn_blocking(move || {
            let mut samples = music::decode(&path, limit)?;
            let gain = normalising_gain(&samples, target_lufs);
            apply_gain(&mut samples, gain);
            // Fade the end in case the track was cut at the limit.
            let fade = samples.len().min(FRAME * 50);
            dsp::fade_out(&mut samples, fade);
            Ok::<_, super::audio::AudioError>(samples)
        });
        match prepared.await {
            Ok(Ok(samples)) => {
                segment.push_sentence(format!("♪ {}", track.title));
                segment.push_audio(samples);
            }
            Ok(Err(e)) => tracing::warn!(track = %track.title, error = %e, "cannot play a track"),
            Err(e) => tracing::warn!(error = %e, "track decoding task failed"),
        }
    }
}

/// The producer loop: keeps the rundown filled ahead of the playout.
async fn produce(station: Weak<ChannelStation>) {
    loop {
        let Some(st) = station.upgrade() else { return };
        st.want_caller();
        let clock = st.services.clock.clone();
        let live = st.state().live;
        let ahead = st.playout.rundown.ready_ahead_secs();
        let enough = ahead >= st.services.config.lookahead_secs && !st.playout.rundown.is_empty();
        if !live || enough {
            drop(st);
            clock.sleep(IDLE_POLL).await;
            continue;
        }
        // The next segment starts airing when what is ready has aired.
        let at = clock.now() + chrono::Duration::milliseconds((ahead * 1000.0) as i64);
        let plan = st.plan(at, None);
        let kind = plan.kind;
        if kind == PlanKind::StationId {
            *lock(&st.closed_hour) = Some(st.services.time.next_hour(at));
        }
        if st.produce_one(plan).await == 0 {
            // Nothing to air (every voice failed, or aired nothing): it leaves the time
            // planned for it unfilled, so the next plan is for the same moment. Producing
            // again at once would spin, sending listeners a start and an end each time.
            tracing::warn!(channel = %st.name, ?kind, "a segment came out without audio; the filler covers until the next try");
            drop(st);
            clock.sleep(IDLE_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::config::Settings;
    use crate::host::clock::ScaledClock;
    use crate::host::{Host, HostConfig};

    /// Callers released at once, round after round, each round on a fresh channel: the
    /// count of waiting studio segments and the insertion must be one critical section, or
    /// two callers both see room for one more and the queue overfills. The programme clock
    /// all but stands still, so nothing airs (and leaves the queue) during a round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_speak_requests_never_overfill_the_queue() {
        const LIMIT: usize = 2;
        const CALLERS: usize = 8;
        const ROUNDS: usize = 200;
        let env: HashMap<String, String> = [
            ("RADIO24__HOST__SPEAK_QUEUE", "2"),
            ("RADIO24__VOICE__BACKEND", "none"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings =
            Settings::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), &env).unwrap();
        let clock = Arc::new(ScaledClock::new(chrono::Utc::now(), 1e-6));
        let host = Host::start_with_clock(HostConfig::from_settings(&settings), clock)
            .await
            .unwrap();
        let services = host
            .station(&settings.station.default_channel)
            .unwrap()
            .services()
            .clone();
        let runtime = tokio::runtime::Handle::current();
        for round in 0..ROUNDS {
            let station = ChannelStation::spawn(
                ChannelName::parse(&format!("race{round}")).unwrap(),
                ChannelState {
                    live: false,
                    schedule: Vec::new(),
                },
                services.clone(),
            )
            .unwrap();
            // The frame clock's first frame airs at once (a filler: nothing is ready yet);
            // the next is hours of real time away, so after it nothing leaves the queue.
            let ticked = std::time::Instant::now() + Duration::from_secs(60);
            while station.playout.stats.frames.load(Ordering::Relaxed) == 0 {
                assert!(
                    std::time::Instant::now() < ticked,
                    "the frame clock never ticked"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let start = Arc::new(std::sync::Barrier::new(CALLERS));
            let callers: Vec<_> = (0..CALLERS)
                .map(|i| {
                    let (station, start, runtime) =
                        (station.clone(), start.clone(), runtime.clone());
                    std::thread::spawn(move || {
                        let _runtime = runtime.enter();
                        start.wait();
                        station.speak(format!("{i}。"), SpeakMode::Next).is_ok()
                    })
                })
                .collect();
            let accepted = callers
                .into_iter()
                .map(std::thread::JoinHandle::join)
                .filter(|took| matches!(took, Ok(true)))
                .count();
            assert_eq!(
                accepted, LIMIT,
                "round {round}: {accepted} of {CALLERS} taken with room for {LIMIT}"
            );
        }
    }

    #[test]
    fn retry_waits_double_and_saturate_at_the_cap() {
        let first = Duration::from_millis(1000);
        assert_eq!(retry_wait(first, 0), first);
        assert_eq!(retry_wait(first, 1), Duration::from_secs(2));
        assert_eq!(retry_wait(first, 3), Duration::from_secs(8));
        // 2^9 s is past the cap; 2^32 overflows a u32 and 2^31 s × 60 a Duration's multiply:
        // neither panics, both wait the cap.
        assert_eq!(retry_wait(first, 9), MAX_RETRY_WAIT);
        assert_eq!(retry_wait(first, 32), MAX_RETRY_WAIT);
        assert_eq!(retry_wait(Duration::from_secs(60), 31), MAX_RETRY_WAIT);
        assert_eq!(retry_wait(Duration::MAX, u32::MAX), MAX_RETRY_WAIT);
        assert_eq!(retry_wait(Duration::ZERO, u32::MAX), Duration::ZERO);
    }
}
