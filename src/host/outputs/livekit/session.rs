//! One session in a LiveKit room, from join to leave, in LiveKit's two-PeerConnection mode:
//!
//! 1. signalling WebSocket `<url>/rtc` with the host's token → `JoinResponse` (ICE servers);
//! 2. `AddTrack` (one Opus audio track) → the server's `TrackPublished`;
//! 3. the publisher PeerConnection's offer → the server's answer; ICE candidates trickle both
//!    ways, tagged publisher or subscriber;
//! 4. the server may offer a subscriber PeerConnection (for what the host could subscribe
//!    to, which is nothing): it is answered, so the server's view of the session is complete;
//! 5. once the publisher PeerConnection reports `connected`, each 20 ms programme frame is
//!    encoded to Opus and written to the track (frames written before that are lost, so they
//!    are not written);
//! 6. on shutdown, `Leave`, then every connection is closed.
//!
//! Anything that ends the session (signalling closed, the PeerConnection failed, the server
//! asking the host to leave, the playout ending) is returned as an error; the caller rejoins.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_protocol as proto;
use livekit_signaling::{SignalClient, SignalEvent, SignalOptions};
use proto::signal_request::Message as Request;
use proto::signal_response::Message as Response;
use secrecy::ExposeSecret;
use tokio::sync::{broadcast, mpsc, watch};
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use super::{LivekitConfig, PublisherError};
use crate::domain::ChannelName;
use crate::host::audio::{FRAME_DURATION, RATE};

/// The track's client id (`cid`), also its id in the SDP.
const TRACK_CID: &str = "radio24-programme";
/// A join that has not connected by then has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Lifetime of the host's token. It only has to be valid when joining: LiveKit keeps a
/// participant in the room after its token expires (and sends refreshed ones).
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
/// Remote ICE candidates kept while their PeerConnection has no remote description yet.
const MAX_PENDING_CANDIDATES: usize = 64;
/// The largest Opus packet (RFC 6716 recommends sizing for this).
const MAX_PACKET: usize = 4000;

/// Who publishes where.
pub(super) struct Target<'a> {
    pub channel: &'a ChannelName,
    pub identity: &'a str,
    pub config: &'a LivekitConfig,
}

/// What the PeerConnections' callbacks report to the session loop.
enum PeerEvent {
    Candidate(proto::SignalTarget, RTCIceCandidateInit),
    State(proto::SignalTarget, RTCPeerConnectionState),
}

/// Runs one session: `Ok` when `stop` was set (the room was left), an error when the
/// session could not start or ended. `on_connected` is called once audio can flow.
pub(super) async fn run(
    target: &Target<'_>,
    frames: broadcast::Receiver<Arc<[i16]>>,
    stop: &mut watch::Receiver<bool>,
    on_connected: impl FnMut(),
) -> Result<(), PublisherError> {
    let token = mint_token(target)?;
    let mut options = SignalOptions::default();
    // The host hears nobody: the programme is all it does.
    options.auto_subscribe = false;
    let (signal, join, signal_events) = tokio::select! {
        joined = SignalClient::connect(&target.config.url, &token, options, None) => joined?,
        _ = stop.changed() => return Ok(()),
    };
    let signal = Arc::new(signal);
    let session = Session::new(target, signal.clone(), &join).await;
    let outcome = match session {
        Ok(mut session) => {
            let outcome = session
                .drive(frames, signal_events, stop, on_connected)
                .await;
            if outcome.is_ok() {
                signal
                    .send(Request::Leave(proto::LeaveRequest {
                        can_reconnect: false,
                        reason: proto::DisconnectReason::ClientInitiated as i32,
                        action: proto::leave_request::Action::Disconnect as i32,
                        regions: None,
                    }))
                    .await;
            }
            session.close().await;
            outcome
        }
        Err(e) => Err(e),
    };
    signal.close().await;
    outcome
}

fn mint_token(target: &Target<'_>) -> Result<String, PublisherError> {
    AccessToken::with_api_key(
        &target.config.api_key,
        target.config.api_secret.expose_secret(),
    )
    .with_ttl(TOKEN_TTL)
    .with_identity(target.identity)
    .with_name("Radio24")
    .with_grants(VideoGrants {
        room_join: true,
        room: target.channel.to_string(),
        can_publish: Some(true),
        can_subscribe: Some(false),
        can_publish_data: Some(false),
        can_publish_sources: vec!["microphone".to_owned()],
        ..VideoGrants::default()
    })
    .to_jwt()
    .map_err(|e| PublisherError::Token(e.to_string()))
}

struct Session {
    signal: Arc<SignalClient>,
    rtc: webrtc::api::API,
    ice_servers: Vec<RTCIceServer>,
    publisher: Arc<RTCPeerConnection>,
    subscriber: Option<Arc<RTCPeerConnection>>,
    track: Arc<TrackLocalStaticSample>,
    peer_events: mpsc::Sender<PeerEvent>,
    peer_rx: mpsc::Receiver<PeerEvent>,
    /// Remote candidates that arrived before their PeerConnection's remote description.
    pending: Vec<(proto::SignalTarget, RTCIceCandidateInit)>,
    offers: u32,
    encoder: opus::Encoder,
    packet: Vec<u8>,
    channel: ChannelName,
}

impl Session {
    async fn new(
        target: &Target<'_>,
        signal: Arc<SignalClient>,
        join: &proto::JoinResponse,
    ) -> Result<Self, PublisherError> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        let registry = register_default_interceptors(Registry::new(), &mut media)?;
        let rtc = APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build();
        let ice_servers: Vec<RTCIceServer> = join
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let (peer_events, peer_rx) = mpsc::channel(64);
        let publisher = peer_connection(
            &rtc,
            &ice_servers,
            proto::SignalTarget::Publisher,
            &peer_events,
        )
        .await?;
        let track = Arc::new(TrackLocalStaticSample::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: RATE,
                // WebRTC's Opus is always declared stereo; a mono stream is valid in it.
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: Vec::new(),
            },
            TRACK_CID.to_owned(),
            target.identity.to_owned(),
        ));
        let sender = publisher
            .add_track(track.clone() as Arc<dyn TrackLocal + Send + Sync>)
            .await?;
        // RTCP from the server must be read for the interceptors (NACK, reports) to work.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while sender.read(&mut buf).await.is_ok() {}
        });
        let mut encoder = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(
            i32::try_from(target.config.bitrate).unwrap_or(i32::MAX),
        ))?;
        encoder.set_inband_fec(true)?;
        signal
            .send(Request::AddTrack(proto::AddTrackRequest {
                cid: TRACK_CID.to_owned(),
                name: "programme".to_owned(),
                r#type: proto::TrackType::Audio as i32,
                source: proto::TrackSource::Microphone as i32,
                // The programme is continuous: no silence suppression, no redundancy.
                audio_features: vec![proto::AudioTrackFeature::TfNoDtx as i32],
                disable_red: true,
                ..Default::default()
            }))
            .await;
        Ok(Self {
            signal,
            rtc,
            ice_servers,
            publisher,
            subscriber: None,
            track,
            peer_events,
            peer_rx,
            pending: Vec::new(),
            offers: 0,
            encoder,
            packet: vec![0; MAX_PACKET],
            channel: target.channel.clone(),
        })
    }

    async fn drive(
        &mut self,
        mut frames: broadcast::Receiver<Arc<[i16]>>,
        mut signal_events: mpsc::UnboundedReceiver<SignalEvent>,
        stop: &mut watch::Receiver<bool>,
        mut on_connected: impl FnMut(),
    ) -> Result<(), PublisherError> {
        let connect_deadline = tokio::time::sleep(CONNECT_TIMEOUT);
        tokio::pin!(connect_deadline);
        let mut connected = false;
        let mut write_failed = false;
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                event = signal_events.recv() => match event {
                    Some(SignalEvent::Message(message)) => self.on_signal(*message).await?,
                    Some(SignalEvent::Close(reason)) => {
                        return Err(PublisherError::Dropped(format!("signalling closed: {reason}")));
                    }
                    None => return Err(PublisherError::Dropped("signalling closed".into())),
                },
                Some(event) = self.peer_rx.recv() => match event {
                    PeerEvent::Candidate(target, candidate) => {
                        let candidate_init = serde_json::to_string(&candidate)
                            .map_err(|e| PublisherError::Dropped(format!("ICE candidate: {e}")))?;
                        self.signal
                            .send(Request::Trickle(proto::TrickleRequest {
                                candidate_init,
                                target: target as i32,
                                r#final: false,
                            }))
                            .await;
                    }
                    PeerEvent::State(proto::SignalTarget::Publisher, state) => match state {
                        RTCPeerConnectionState::Connected if !connected => {
                            connected = true;
                            on_connected();
                        }
                        RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Disconnected
                        | RTCPeerConnectionState::Closed => {
                            return Err(PublisherError::Dropped(format!(
                                "the publisher PeerConnection is {state}"
                            )));
                        }
                        _ => {}
                    },
                    PeerEvent::State(proto::SignalTarget::Subscriber, state) => {
                        tracing::debug!(channel = %self.channel, %state, "subscriber PeerConnection");
                    }
                },
                frame = frames.recv() => match frame {
                    Ok(frame) if connected => {
                        if let Err(e) = self.send_frame(&frame).await {
                            if !write_failed {
                                tracing::warn!(channel = %self.channel, error = %e, "a frame could not be sent to LiveKit");
                            }
                            write_failed = true;
                        }
                    }
                    // Written before the PeerConnection is up, a frame would be lost anyway.
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(channel = %self.channel, missed, "the LiveKit publisher fell behind the playout");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(PublisherError::Dropped("the channel's playout ended".into()));
                    }
                },
                _ = &mut connect_deadline, if !connected => {
                    return Err(PublisherError::Timeout(CONNECT_TIMEOUT));
                }
            }
        }
    }

    async fn send_frame(&mut self, frame: &[i16]) -> Result<(), PublisherError> {
        let len = self.encoder.encode(frame, &mut self.packet)?;
        self.track
            .write_sample(&Sample {
                data: Bytes::copy_from_slice(&self.packet[..len]),
                duration: FRAME_DURATION,
                ..Sample::default()
            })
            .await?;
        Ok(())
    }

    async fn on_signal(&mut self, message: Response) -> Result<(), PublisherError> {
        match message {
            Response::TrackPublished(published) if published.cid == TRACK_CID => {
                tracing::debug!(
                    channel = %self.channel,
                    sid = published.track.map(|t| t.sid).unwrap_or_default(),
                    "track published"
                );
                self.offer().await?;
            }
            Response::Answer(answer) => {
                self.publisher
                    .set_remote_description(RTCSessionDescription::answer(answer.sdp)?)
                    .await?;
                self.add_pending(proto::SignalTarget::Publisher).await;
            }
            Response::Offer(offer) => self.answer_subscriber(offer).await?,
            Response::Trickle(trickle) => {
                let target = proto::SignalTarget::try_from(trickle.target)
                    .unwrap_or(proto::SignalTarget::Publisher);
                match serde_json::from_str::<RTCIceCandidateInit>(&trickle.candidate_init) {
                    Ok(candidate) if !candidate.candidate.is_empty() => {
                        self.add_candidate(target, candidate).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(channel = %self.channel, error = %e, "unreadable ICE candidate from the server");
                    }
                }
            }
            Response::Leave(leave) => {
                let reason = proto::DisconnectReason::try_from(leave.reason)
                    .map(|r| r.as_str_name())
                    .unwrap_or("unknown");
                return Err(PublisherError::Dropped(format!(
                    "the server asked the host to leave ({reason})"
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// Offers the publisher PeerConnection (after the server accepted the track).
    async fn offer(&mut self) -> Result<(), PublisherError> {
        let offer = self.publisher.create_offer(None).await?;
        let sdp = offer.sdp.clone();
        self.publisher.set_local_description(offer).await?;
        self.offers += 1;
        let mut mid_to_track_id = std::collections::HashMap::new();
        for transceiver in self.publisher.get_transceivers().await {
            if let Some(mid) = transceiver.mid() {
                mid_to_track_id.insert(mid.to_string(), TRACK_CID.to_owned());
            }
        }
        self.signal
            .send(Request::Offer(proto::SessionDescription {
                r#type: "offer".to_owned(),
                sdp,
                id: self.offers,
                mid_to_track_id,
            }))
            .await;
        Ok(())
    }

    /// Answers the server's offer of the subscriber PeerConnection.
    async fn answer_subscriber(
        &mut self,
        offer: proto::SessionDescription,
    ) -> Result<(), PublisherError> {
        let subscriber = match &self.subscriber {
            Some(pc) => pc.clone(),
            None => {
                let pc = peer_connection(
                    &self.rtc,
                    &self.ice_servers,
                    proto::SignalTarget::Subscriber,
                    &self.peer_events,
                )
                .await?;
                self.subscriber = Some(pc.clone());
                pc
            }
        };
        subscriber
            .set_remote_description(RTCSessionDescription::offer(offer.sdp)?)
            .await?;
        let answer = subscriber.create_answer(None).await?;
        let sdp = answer.sdp.clone();
        subscriber.set_local_description(answer).await?;
        self.signal
            .send(Request::Answer(proto::SessionDescription {
                r#type: "answer".to_owned(),
                sdp,
                id: offer.id,
                mid_to_track_id: Default::default(),
            }))
            .await;
        self.add_pending(proto::SignalTarget::Subscriber).await;
        Ok(())
    }

    fn connection(&self, target: proto::SignalTarget) -> Option<&Arc<RTCPeerConnection>> {
        match target {
            proto::SignalTarget::Publisher => Some(&self.publisher),
            proto::SignalTarget::Subscriber => self.subscriber.as_ref(),
        }
    }

    /// Adds a remote candidate, or keeps it until its PeerConnection can take it.
    async fn add_candidate(&mut self, target: proto::SignalTarget, candidate: RTCIceCandidateInit) {
        let ready = match self.connection(target) {
            Some(pc) => pc.remote_description().await.is_some(),
            None => false,
        };
        if !ready {
            if self.pending.len() < MAX_PENDING_CANDIDATES {
                self.pending.push((target, candidate));
            }
            return;
        }
        if let Some(pc) = self.connection(target)
            && let Err(e) = pc.add_ice_candidate(candidate).await
        {
            tracing::debug!(channel = %self.channel, error = %e, "ICE candidate refused");
        }
    }

    async fn add_pending(&mut self, target: proto::SignalTarget) {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(t, _)| *t == target);
        self.pending = later;
        for (target, candidate) in now {
            self.add_candidate(target, candidate).await;
        }
    }

    async fn close(&mut self) {
        if let Err(e) = self.publisher.close().await {
            tracing::debug!(channel = %self.channel, error = %e, "closing the publisher PeerConnection");
        }
        if let Some(subscriber) = self.subscriber.take() {
            let _ = subscriber.close().await;
        }
    }
}

/// A PeerConnection whose candidates and state changes go to the session loop.
async fn peer_connection(
    rtc: &webrtc::api::API,
    ice_servers: &[RTCIceServer],
    target: proto::SignalTarget,
    events: &mpsc::Sender<PeerEvent>,
) -> Result<Arc<RTCPeerConnection>, PublisherError> {
    let pc = Arc::new(
        rtc.new_peer_connection(RTCConfiguration {
            ice_servers: ice_servers.to_vec(),
            ..Default::default()
        })
        .await?,
    );
    let candidates = events.clone();
    pc.on_ice_candidate(Box::new(move |candidate| {
        let candidates = candidates.clone();
        Box::pin(async move {
            if let Some(init) = candidate.and_then(|c| c.to_json().ok()) {
                let _ = candidates.send(PeerEvent::Candidate(target, init)).await;
            }
        })
    }));
    let states = events.clone();
    pc.on_peer_connection_state_change(Box::new(move |state| {
        let states = states.clone();
        Box::pin(async move {
            let _ = states.send(PeerEvent::State(target, state)).await;
        })
    }));
    Ok(pc)
}
