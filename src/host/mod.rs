//! The host: the on-air engine. Per channel a [`station::ChannelStation`] keeps a
//! [`playout::Playout`] fed — programme clock ([`programme`]), script writers ([`writer`]),
//! voices ([`voice`]), 48 kHz audio tools ([`audio`]), listeners' calls ([`calls`]) — and
//! publishes what airs as
//! [`HostEvent`]s. It implements [`HostBus`], so in `--role all` the API calls it directly
//! and in `--role host` the bus routes ([`crate::bus::http_server`]) expose it over HTTP.
//! It needs no database: the API pushes the channels and schedules ([`Programme`]).
//!
//! Config keys read here: `station.*`, `schedule.*`, `host.*`, `server.max_text_chars`,
//! `openai.*`, `writer.*`, `voice.*`, `audio.*`, `music.*`, `news.*`, `stream.*`,
//! `livekit.*`, `archive.*`, `moderation.*`.

pub mod audio;
pub mod calls;
pub mod clock;
pub mod lease;
pub mod outputs;
pub mod playout;
pub mod programme;
pub mod sentences;
pub mod station;
pub mod voice;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use secrecy::SecretString;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::bus::{
    ArchiveFile, ArchiveFileName, ArchiveListing, AudioStream, BusError, CallAccepted, CallHandoff,
    ChannelProgramme, EventStream, HostBus, HostEvent, OnAir, Programme, Rejection, ScheduleSlot,
    Script, ScriptRequest, SpeakAccepted, SpeakRequest,
};
use crate::config::{Settings, VoiceBackend, WriterBackend, is_set};
use crate::domain::{Block, ChannelName, InvalidInput, SpokenText};
use audio::music::MusicLibrary;
use calls::moderation::{ModerationConfig, Moderator, OpenAiModeration};
use calls::transcribe::{Transcriber, TranscriberConfig};
use calls::{Call, CallDesk, CallError, Taken};
use clock::{Clock, ScaledClock, SystemClock};
use outputs::archive::{Archive, ArchiveConfig};
use outputs::livekit::{LivekitConfig, Publisher};
use outputs::ogg_stream::{OggStream, OggStreamConfig};
use programme::StationTime;
use station::{ChannelState, ChannelStation, EngineConfig, Services, Voices, Writers};
use voice::espeak::{EspeakConfig, EspeakVoice};
use voice::openai_speech::{OpenAiSpeech, SpeechConfig};
use voice::realtime::{RealtimeConfig, RealtimeVoice};
use voice::{Voice, VoiceError};
use writer::news::{NewsConfig, NewsDesk};
use writer::openai::{OpenAiWriter, OpenAiWriterConfig};
use writer::{ScriptWriter, TemplateWriter, WriterError};

/// Longest topic accepted in a script request, in characters.
const MAX_TOPIC_CHARS: usize = 200;

/// The host module's errors.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("channel '{0}' is not on this host")]
    UnknownChannel(ChannelName),
    #[error("channel '{0}' is off air")]
    OffAir(ChannelName),
    #[error("channel '{channel}' already has {limit} segments waiting")]
    QueueFull { channel: ChannelName, limit: usize },
    #[error("script writer failed: {0}")]
    Writer(#[from] WriterError),
    /// The host cannot start with these settings (one line naming the key).
    #[error("{0}")]
    Config(String),
}

impl From<HostError> for BusError {
    fn from(e: HostError) -> Self {
        let message = e.to_string();
        match e {
            HostError::Invalid(invalid) => invalid.into(),
            HostError::UnknownChannel(_) => {
                BusError::rejected(Rejection::NotFound, "unknown_channel", message)
            }
            HostError::OffAir(_) => {
                BusError::rejected(Rejection::BadRequest, "channel_off_air", message)
            }
            HostError::QueueFull { .. } => {
                BusError::rejected(Rejection::Busy, "queue_full", message)
            }
            HostError::Writer(_) | HostError::Config(_) => BusError::Internal(message),
        }
    }
}

impl From<CallError> for BusError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Invalid(invalid) => invalid.into(),
            CallError::Busy(_) => {
                BusError::rejected(Rejection::Busy, "call_in_progress", e.to_string())
            }
        }
    }
}

/// The host's settings, taken from [`Settings`].
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub default_channel: ChannelName,
    pub default_schedule: Vec<Block>,
    pub timezone: chrono_tz::Tz,
    pub max_text_chars: usize,
    pub event_buffer: usize,
    pub clock_speed: f64,
    pub engine: EngineConfig,
    pub openai_key: Option<SecretString>,
    pub openai_base_url: String,
    pub writer_backend: WriterBackend,
    pub chat_model: String,
    pub writer_timeout: Duration,
    pub max_tokens: u32,
    pub voice_backend: VoiceBackend,
    pub speech_model: String,
    pub speech_voice: String,
    pub realtime_model: String,
    pub realtime_voice: String,
    pub transcribe_model: String,
    pub moderation_model: String,
    /// Check call-ins with `/v1/moderations` (when a key is set).
    pub moderate_with_openai: bool,
    pub blocked_words: Vec<String>,
    pub voice_timeout: Duration,
    pub espeak_binary: String,
    pub espeak_wpm: u32,
    pub music_dir: Option<PathBuf>,
    pub news: NewsConfig,
    pub stream: OggStreamConfig,
    /// Where to publish each channel into LiveKit; `None` = not configured or `publish` off.
    pub livekit: Option<LivekitConfig>,
    /// The programme archive; `None` when `archive.dir` is empty.
    pub archive: Option<ArchiveConfig>,
}

impl HostConfig {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            default_channel: s.station.default_channel.clone(),
            default_schedule: s.schedule.default.clone(),
            // Validated when the settings were loaded.
            timezone: s.station.timezone.parse().unwrap_or(chrono_tz::Asia::Tokyo),
            max_text_chars: s.server.max_text_chars,
            event_buffer: s.host.event_buffer,
            clock_speed: s.host.clock_speed,
            engine: EngineConfig {
                station_name: s.station.name.clone(),
                language: s.station.language.clone(),
                topics: s.schedule.topics.clone(),
                lookahead_secs: s.host.lookahead_secs,
                segment_secs: s.host.segment_secs,
                retries: s.host.retries,
                retry_backoff: Duration::from_millis(s.host.retry_backoff_ms),
                target_lufs: s.audio.target_lufs,
                chars_per_second: s.host.chars_per_second,
                max_track_secs: s.music.max_track_secs,
                speak_queue: s.host.speak_queue,
                blank_air: playout::BlankAir {
                    threshold_dbfs: s.audio.blank_air_dbfs,
                    after: Duration::from_secs_f64(s.audio.blank_air_secs),
                },
            },
            openai_key: s
                .openai
                .api_key
                .clone()
                .filter(|k| is_set(&Some(k.clone()))),
            openai_base_url: s.openai.base_url.clone(),
            writer_backend: s.writer.backend,
            chat_model: s.openai.chat_model.clone(),
            writer_timeout: Duration::from_secs(s.writer.timeout_secs),
            max_tokens: s.writer.max_tokens,
            voice_backend: s.voice.backend,
            speech_model: s.openai.speech_model.clone(),
            speech_voice: s.openai.speech_voice.clone(),
            realtime_model: s.openai.realtime_model.clone(),
            realtime_voice: s.openai.realtime_voice.clone(),
            transcribe_model: s.openai.transcribe_model.clone(),
            moderation_model: s.openai.moderation_model.clone(),
            moderate_with_openai: s.moderation.use_openai,
            blocked_words: s.moderation.blocked_words.clone(),
            voice_timeout: Duration::from_secs(s.voice.timeout_secs),
            espeak_binary: s.voice.espeak_binary.clone(),
            espeak_wpm: s.voice.espeak_wpm,
            music_dir: s.music.dir.clone(),
            news: NewsConfig {
                feeds: s.news.feeds.clone(),
                max_items: s.news.max_items,
                ttl: Duration::from_secs(s.news.refresh_secs),
                timeout: Duration::from_secs(s.news.timeout_secs),
            },
            stream: OggStreamConfig {
                bitrate: s.stream.bitrate,
                page_packets: s.stream.page_packets,
                listener_buffer_pages: s.stream.listener_buffer_pages,
            },
            livekit: s.livekit.publisher_url().and_then(|url| {
                Some(LivekitConfig {
                    url,
                    api_key: s.livekit.api_key.clone()?.trim().to_owned(),
                    api_secret: s.livekit.api_secret.clone()?,
                    bitrate: s.livekit.publish_bitrate,
                    reconnect_max: Duration::from_millis(s.livekit.reconnect_max_ms),
                })
            }),
            archive: s.archive.enabled_dir().map(|dir| ArchiveConfig {
                dir: dir.to_path_buf(),
                retention_days: s.archive.retention_days,
                bitrate: s.stream.bitrate,
            }),
        }
    }

    fn require_key(&self, key: &str) -> Result<SecretString, HostError> {
        self.openai_key.clone().ok_or_else(|| {
            HostError::Config(format!(
                "config key `openai.api_key`: required by {key}; set OPENAI_API_KEY"
            ))
        })
    }

    fn writer(&self) -> Result<Option<Arc<dyn ScriptWriter>>, HostError> {
        let key = match (self.writer_backend, &self.openai_key) {
            (WriterBackend::Template, _) | (WriterBackend::Auto, None) => return Ok(None),
            (WriterBackend::Openai, _) => self.require_key("writer.backend = \"openai\"")?,
            (WriterBackend::Auto, Some(key)) => key.clone(),
        };
        let writer = OpenAiWriter::new(OpenAiWriterConfig {
            base_url: self.openai_base_url.clone(),
            api_key: key,
            model: self.chat_model.clone(),
            timeout: self.writer_timeout,
            max_tokens: self.max_tokens,
            ..OpenAiWriterConfig::default()
        })
        .map_err(|e| HostError::Config(format!("config key `openai.base_url`: {e}")))?;
        Ok(Some(Arc::new(writer)))
    }

    /// The voices, and the Realtime voice again when it is the one in use (it also answers
    /// recorded calls).
    async fn voices(&self) -> Result<(Voices, Option<Arc<RealtimeVoice>>), HostError> {
        let mut realtime_in_use = None;
        let espeak = match EspeakVoice::probe(&self.espeak_binary).await {
            Ok(version) => {
                let mut config = EspeakConfig::for_language(&self.engine.language);
                config.binary = PathBuf::from(&self.espeak_binary);
                config.words_per_minute = self.espeak_wpm;
                tracing::info!(%version, "espeak-ng available as the offline voice");
                Some(Arc::new(EspeakVoice::new(config)) as Arc<dyn Voice>)
            }
            Err(e) => {
                tracing::info!(error = %e, "espeak-ng not available");
                None
            }
        };
        let speech = |key: SecretString| -> Result<Arc<dyn Voice>, HostError> {
            let mut config = SpeechConfig::new(self.openai_base_url.clone(), key);
            config.model = self.speech_model.clone();
            config.voice = self.speech_voice.clone();
            config.first_byte_timeout = self.voice_timeout;
            config.idle_timeout = self.voice_timeout;
            Ok(Arc::new(OpenAiSpeech::new(config).map_err(config_error)?))
        };
        let voices = match (self.voice_backend, &self.openai_key) {
            (VoiceBackend::CaptionsOnly, _) => Voices {
                primary: None,
                fallback: None,
            },
            (VoiceBackend::EspeakNg, _) => match espeak {
                Some(v) => Voices {
                    primary: Some(v),
                    fallback: None,
                },
                None => {
                    return Err(HostError::Config(format!(
                        "config key `voice.backend`: espeak-ng, but {:?} cannot run (install espeak-ng or set voice.espeak_binary)",
                        self.espeak_binary
                    )));
                }
            },
            (VoiceBackend::OpenaiRealtime, _) => {
                let mut config = RealtimeConfig::new(
                    self.openai_base_url.clone(),
                    self.require_key("voice.backend = \"openai-realtime\"")?,
                );
                config.model = self.realtime_model.clone();
                config.voice = self.realtime_voice.clone();
                config.first_audio_timeout = self.voice_timeout;
                config.idle_timeout = self.voice_timeout;
                let realtime = Arc::new(RealtimeVoice::new(config).map_err(config_error)?);
                realtime_in_use = Some(realtime.clone());
                Voices {
                    primary: Some(realtime),
                    fallback: espeak,
                }
            }
            (VoiceBackend::OpenaiSpeech, _) => Voices {
                primary: Some(speech(
                    self.require_key("voice.backend = \"openai-speech\"")?,
                )?),
                fallback: espeak,
            },
            (VoiceBackend::Auto, Some(key)) => Voices {
                primary: Some(speech(key.clone())?),
                fallback: espeak,
            },
            (VoiceBackend::Auto, None) => Voices {
                primary: espeak,
                fallback: None,
            },
        };
        let voices = Voices {
            primary: voices.primary.map(guarded_and_metered),
            fallback: voices.fallback.map(guarded_and_metered),
        };
        if voices.primary.is_none() {
            tracing::warn!(
                "no voice available: the station airs captions only (install espeak-ng or set OPENAI_API_KEY)"
            );
        }
        Ok((voices, realtime_in_use))
    }
}

/// `voice` with its noise refused ([`voice::noise`]) and its calls metered, the refusals
/// among its failures.
fn guarded_and_metered(voice: Arc<dyn Voice>) -> Arc<dyn Voice> {
    voice::Metered::wrap(voice::noise::NoiseGuard::wrap(voice))
}

impl HostConfig {
    /// What checks and answers listeners' calls: transcription and moderation through
    /// OpenAI when a key is set, the word list always, and the Realtime voice when it is the
    /// voice in use.
    fn call_desk(&self, realtime: Option<Arc<RealtimeVoice>>) -> Result<CallDesk, HostError> {
        let transcriber = match &self.openai_key {
            Some(key) => Some(
                Transcriber::new(TranscriberConfig {
                    base_url: self.openai_base_url.clone(),
                    api_key: key.clone(),
                    model: self.transcribe_model.clone(),
                    timeout: self.writer_timeout,
                })
                .map_err(|e| HostError::Config(format!("config key `openai.base_url`: {e}")))?,
            ),
            None => None,
        };
        let openai = match (&self.openai_key, self.moderate_with_openai) {
            (Some(key), true) => Some(OpenAiModeration {
                base_url: self.openai_base_url.clone(),
                api_key: key.clone(),
                model: self.moderation_model.clone(),
                timeout: self.writer_timeout,
            }),
            _ => None,
        };
        let moderator = Moderator::new(ModerationConfig {
            openai,
            blocked_words: self.blocked_words.clone(),
        })
        .map_err(|e| HostError::Config(format!("config key `moderation`: {e}")))?;
        Ok(CallDesk::new(transcriber, moderator, realtime))
    }
}

fn config_error(e: VoiceError) -> HostError {
    HostError::Config(format!("config key `openai.base_url`: {e}"))
}

struct Inner {
    config: HostConfig,
    services: Arc<Services>,
    channels: RwLock<HashMap<ChannelName, Arc<ChannelStation>>>,
    events: broadcast::Sender<HostEvent>,
    /// Each channel's live Ogg/Opus encoder, started by its first listener.
    streams: Mutex<HashMap<ChannelName, OggStream>>,
    /// Each channel's LiveKit publisher (when LiveKit is configured).
    publishers: Mutex<HashMap<ChannelName, Publisher>>,
    /// The programme archive, when `archive.dir` is set.
    archive: Option<Arc<Archive>>,
}

/// The on-air engine. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

impl Host {
    /// Starts the engine on the real clock (or the scaled one `host.clock_speed` asks for)
    /// with the default channel on the default schedule, until a programme arrives.
    pub async fn start(config: HostConfig) -> Result<Self, HostError> {
        let clock: Arc<dyn Clock> = if (config.clock_speed - 1.0).abs() < f64::EPSILON {
            Arc::new(SystemClock)
        } else {
            Arc::new(ScaledClock::new(chrono::Utc::now(), config.clock_speed))
        };
        Self::start_with_clock(config, clock).await
    }

    /// Starts the engine on the given clock.
    pub async fn start_with_clock(
        config: HostConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, HostError> {
        let (events, _) = broadcast::channel(config.event_buffer);
        let primary_writer = config.writer()?;
        let (voices, realtime) = config.voices().await?;
        let calls = config.call_desk(realtime)?;
        let news = if config.news.feeds.is_empty() {
            None
        } else {
            Some(
                NewsDesk::new(config.news.clone())
                    .map_err(|e| HostError::Config(format!("config key `news.feeds`: {e}")))?,
            )
        };
        let music = config.music_dir.as_ref().map(MusicLibrary::new);
        let archive = match &config.archive {
            Some(archive) => Some(
                Archive::open(archive.clone(), config.timezone, clock.clone())
                    .await
                    .map_err(|e| HostError::Config(format!("config key `archive.dir`: {e}")))?,
            ),
            None => None,
        };
        tracing::info!(
            writer = primary_writer.as_ref().map_or("template", |w| w.name()),
            voice = voices.name(),
            timezone = %config.timezone,
            livekit = config.livekit.as_ref().map_or("off", |l| l.url.as_str()),
            "on-air engine starting"
        );
        let services = Arc::new(Services::new(
            clock,
            events.clone(),
            Writers {
                primary: primary_writer,
                fallback: TemplateWriter::new(),
            },
            voices,
            news,
            music,
            StationTime::new(config.timezone),
            config.engine.clone(),
            calls,
        ));
        if services.music.is_some() {
            // First scan before anything is planned, so the first MUSIC hour finds the tracks.
            let tracks = tokio::task::spawn_blocking({
                let library = services.music.clone();
                move || library.map(|l| l.scan()).unwrap_or_default()
            })
            .await
            .unwrap_or_default();
            tracing::info!(tracks = tracks.len(), "music library");
            services.set_tracks(tracks);
            tokio::spawn(Services::watch_music(Arc::downgrade(&services)));
        }
        // Rendered in the background: a slow or failing voice must not delay start-up (the
        // filler is a chime until the station ID is ready).
        tokio::spawn({
            let services = services.clone();
            async move { services.prepare_station_id().await }
        });
        let host = Self {
            inner: Arc::new(Inner {
                services,
                channels: RwLock::new(HashMap::new()),
                events,
                streams: Mutex::new(HashMap::new()),
                publishers: Mutex::new(HashMap::new()),
                archive,
                config,
            }),
        };
        let default = ChannelProgramme {
            name: host.inner.config.default_channel.clone(),
            live: true,
            schedule: host
                .inner
                .config
                .default_schedule
                .iter()
                .enumerate()
                .map(|(hour, block)| ScheduleSlot {
                    hour: hour as u8,
                    block: *block,
                    prompt: None,
                })
                .collect(),
        };
        host.apply_programme(Programme {
            channels: vec![default],
        });
        Ok(host)
    }

    /// The running stations, read-locked (every writer leaves the map consistent, so a
    /// poisoned lock is usable).
    fn channels(&self) -> RwLockReadGuard<'_, HashMap<ChannelName, Arc<ChannelStation>>> {
        self.inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn channel(&self, name: Option<&ChannelName>) -> Result<Arc<ChannelStation>, HostError> {
        let name = name.unwrap_or(&self.inner.config.default_channel);
        let channels = self.channels();
        channels
            .get(name)
            .cloned()
            .ok_or_else(|| HostError::UnknownChannel(name.clone()))
    }

    /// The running station of a channel (tests and sinks attach to its playout).
    pub fn station(&self, name: &ChannelName) -> Option<Arc<ChannelStation>> {
        self.channel(Some(name)).ok()
    }

    /// Listeners of each channel's live stream (in split mode, each API relay is one).
    pub fn stream_listeners(&self) -> BTreeMap<ChannelName, usize> {
        let streams = crate::sync::lock(&self.inner.streams);
        streams
            .iter()
            .filter(|(_, s)| s.is_running())
            .map(|(name, s)| (name.clone(), s.listeners()))
            .collect()
    }

    /// Each channel's LiveKit publisher state (empty when the host does not publish).
    pub fn livekit_status(&self) -> BTreeMap<ChannelName, crate::bus::PublisherStatus> {
        let channels = self.channels();
        channels
            .iter()
            .filter_map(|(name, station)| Some((name.clone(), station.livekit_status()?)))
            .collect()
    }

    /// Each channel's frame clock: how late its ticks came, and frames skipped.
    pub fn playout_timing(&self) -> BTreeMap<ChannelName, crate::bus::PlayoutTiming> {
        let channels = self.channels();
        channels
            .iter()
            .map(|(name, station)| (name.clone(), station.playout.stats.timing()))
            .collect()
    }

    /// A new listener of the channel's stream, starting its encoder on first use.
    fn listen(&self, channel: &ChannelName) -> Result<AudioStream, BusError> {
        let station = self.channel(Some(channel))?;
        let mut streams = crate::sync::lock(&self.inner.streams);
        // Encoders of channels that were removed have stopped with their playout.
        streams.retain(|_, s| s.is_running());
        if let Some(listener) = streams.get(channel).and_then(OggStream::listen) {
            return Ok(listener);
        }
        let stream = OggStream::spawn(
            channel,
            station.playout.subscribe(),
            &self.inner.config.stream,
        )
        .map_err(|e| BusError::Internal(e.to_string()))?;
        let listener = stream
            .listen()
            .ok_or_else(|| BusError::Internal("the stream encoder stopped at once".into()))?;
        streams.insert(channel.clone(), stream);
        Ok(listener)
    }

    fn apply_programme(&self, programme: Programme) {
        let mut channels = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::with_capacity(programme.channels.len());
        for ch in programme.channels {
            let state = ChannelState {
                live: ch.live,
                schedule: ch.schedule,
            };
            // A channel that stays keeps its station (and what it has ready): changes take
            // effect at its next segment. The hour's block may have changed: say so now, so
            // listeners see an operator's schedule edit at once.
            let station = match channels.remove(&ch.name) {
                Some(station) => {
                    station.set_state(state);
                    station.announce();
                    station
                }
                None => {
                    let station = match ChannelStation::spawn(
                        ch.name.clone(),
                        state,
                        self.inner.services.clone(),
                    ) {
                        Ok(station) => station,
                        Err(e) => {
                            // Only when the system refuses a thread: the channel stays off
                            // air until the next programme update tries again.
                            tracing::error!(channel = %ch.name, error = %e, "cannot start the channel's playout");
                            continue;
                        }
                    };
                    if let Some(archive) = &self.inner.archive {
                        archive.record(
                            &ch.name,
                            station.playout.subscribe(),
                            self.inner.events.subscribe(),
                        );
                    }
                    station
                }
            };
            next.insert(ch.name, station);
        }
        *channels = next;
        if let Some(livekit) = &self.inner.config.livekit {
            let mut publishers = self
                .inner
                .publishers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // A removed channel's publisher leaves its room as it is dropped.
            publishers.retain(|name, _| channels.contains_key(name));
            for (name, station) in channels.iter() {
                if !publishers.contains_key(name) {
                    publishers.insert(name.clone(), Publisher::spawn(station, livekit.clone()));
                }
            }
        }
    }

    /// Stops airing (at shutdown): every channel's playout ends its current frame with a
    /// fade and stops, the archive closes its hour files (end-of-stream page, captions), and
    /// the host leaves every LiveKit room; returns when all of that is done.
    pub async fn shutdown(&self) {
        let stations: Vec<Arc<ChannelStation>> = self.channels().values().cloned().collect();
        futures::future::join_all(stations.iter().map(|s| s.playout.finish())).await;
        let archive = async {
            if let Some(archive) = &self.inner.archive {
                archive.finish().await;
            }
        };
        tokio::join!(archive, self.leave_livekit());
        tracing::info!("the host stopped airing");
    }

    /// Leaves every LiveKit room and waits until the connections are closed.
    async fn leave_livekit(&self) {
        let publishers: Vec<Publisher> = self
            .inner
            .publishers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect();
        futures::future::join_all(publishers.into_iter().map(Publisher::shutdown)).await;
    }

    fn hello(&self) -> HostEvent {
        let channels = self.channels();
        let mut states: Vec<OnAir> = channels.values().map(|c| c.on_air()).collect();
        states.sort_by(|a, b| a.channel.cmp(&b.channel));
        let (calls, ended) = self.inner.services.calls.snapshot();
        HostEvent::Hello {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            channels: states,
            calls,
            ended,
        }
    }
}

#[async_trait]
impl HostBus for Host {
    #[tracing::instrument(skip_all, fields(channel))]
    async fn generate_script(&self, req: ScriptRequest) -> Result<Script, BusError> {
        let station = self.channel(req.channel.as_ref())?;
        tracing::Span::current().record("channel", station.name.as_str());
        let topic = match req.topic {
            Some(t) => Some(
                SpokenText::parse(&t, MAX_TOPIC_CHARS)
                    .map_err(|e| {
                        InvalidInput::new("invalid_topic", format!("topic: {}", e.message))
                    })?
                    .into_string(),
            ),
            None => None,
        };
        let mut plan = station.plan(self.inner.services.clock.now(), topic);
        if let Some(block) = req.block
            && block != plan.block
        {
            // The hour's prompt steers only the block it was written for.
            plan.block = block;
            plan.prompt = None;
        }
        plan.target_secs = self.inner.config.engine.segment_secs;
        let (text, writer) = station.write(&plan).await;
        Ok(Script {
            channel: station.name.clone(),
            block: plan.block,
            topic: plan.topic,
            text,
            writer: writer.to_owned(),
        })
    }

    #[tracing::instrument(skip_all, fields(channel, mode = ?req.mode))]
    async fn speak(&self, req: SpeakRequest) -> Result<SpeakAccepted, BusError> {
        let text = SpokenText::parse(&req.text, self.inner.config.max_text_chars)?;
        let station = self.channel(req.channel.as_ref())?;
        tracing::Span::current().record("channel", station.name.as_str());
        if !station.state().live {
            return Err(HostError::OffAir(station.name.clone()).into());
        }
        let (segment_id, queued_ahead) = station.speak(text.into_string(), req.mode)?;
        tracing::info!(segment = %segment_id, queued_ahead, "speak request queued");
        Ok(SpeakAccepted {
            segment_id,
            channel: station.name.clone(),
            mode: req.mode,
            queued_ahead,
        })
    }

    #[tracing::instrument(skip_all, fields(channel = %handoff.channel, call = %handoff.call_id))]
    async fn take_call(&self, handoff: CallHandoff) -> Result<CallAccepted, BusError> {
        let station = self.channel(Some(&handoff.channel))?;
        if !station.state().live {
            return Err(HostError::OffAir(station.name.clone()).into());
        }
        let call = Call::check(handoff)?;
        let accepted = CallAccepted {
            call_id: call.id,
            channel: station.name.clone(),
        };
        let services = &self.inner.services;
        match services.calls.begin(&station.name, call.id)? {
            Taken::New => {}
            Taken::Holding => return Ok(accepted),
            Taken::Ended(report) => {
                // The API missed how it went: tell it again.
                let _ = self.inner.events.send(HostEvent::CallEnded(report));
                return Ok(accepted);
            }
        }
        tracing::info!("call taken");
        let _ = self.inner.events.send(HostEvent::CallLive {
            channel: station.name.clone(),
            call_id: call.id,
        });
        tokio::spawn(calls::air(Arc::downgrade(&station), services.clone(), call));
        Ok(accepted)
    }

    async fn now_playing(&self, channel: &ChannelName) -> Result<OnAir, BusError> {
        Ok(self.channel(Some(channel))?.on_air())
    }

    async fn set_programme(&self, programme: Programme) -> Result<(), BusError> {
        for ch in &programme.channels {
            if let Some(bad) = ch.schedule.iter().find(|s| s.hour > 23) {
                return Err(InvalidInput::new(
                    "invalid_schedule",
                    format!("channel {}: hour {} is not 0-23", ch.name, bad.hour),
                )
                .into());
            }
        }
        tracing::info!(channels = programme.channels.len(), "programme updated");
        self.apply_programme(programme);
        Ok(())
    }

    async fn subscribe(&self) -> Result<EventStream, BusError> {
        // Subscribe before taking the snapshot, so nothing falls between the two.
        let receiver = self.inner.events.subscribe();
        let hello = self.hello();
        let host = self.clone();
        let events = BroadcastStream::new(receiver).map(move |item| match item {
            Ok(event) => event,
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "a subscriber fell behind; sending it a fresh snapshot"
                );
                host.hello()
            }
        });
        Ok(futures::stream::once(async move { hello })
            .chain(events)
            .boxed())
    }

    async fn audio_stream(&self, channel: &ChannelName) -> Result<AudioStream, BusError> {
        self.listen(channel)
    }

    async fn archive_list(&self, channel: &ChannelName) -> Result<ArchiveListing, BusError> {
        let archive = outputs::archive::enabled(self.inner.archive.as_ref())?;
        let station = self.channel(Some(channel))?;
        Ok(ArchiveListing {
            recordings: archive.list(&station.name).await?,
            channel: station.name.clone(),
        })
    }

    async fn archive_file(
        &self,
        channel: &ChannelName,
        file: &ArchiveFileName,
    ) -> Result<ArchiveFile, BusError> {
        let archive = outputs::archive::enabled(self.inner.archive.as_ref())?;
        let station = self.channel(Some(channel))?;
        archive.file(&station.name, file).await
    }
}
