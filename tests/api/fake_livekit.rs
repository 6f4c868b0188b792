//! A fake LiveKit server (SFU) on loopback, faked at the wire: LiveKit's signalling protocol
//! (protobuf `SignalRequest`/`SignalResponse` from `livekit-protocol`, binary WebSocket
//! frames on `/rtc`) and webrtc-rs as the server's side of the PeerConnections. It checks
//! the participant's token with LiveKit's own verifier, answers the join, `AddTrack`, the
//! publisher's offer and pings, trickles ICE both ways, offers a subscriber PeerConnection
//! (as LiveKit does), and decodes every Opus RTP packet it receives. It is not LiveKit: no
//! forwarding, one participant at a time is all the tests need.

use std::sync::Arc;

use livekit_api::access_token::TokenVerifier;
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Request;
use proto::signal_response::Message as Response;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HttpRequest, Response as HttpResponse,
};
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;

use futures::{SinkExt, StreamExt};

pub const API_KEY: &str = "test-livekit-key";
pub const API_SECRET: &str = "test-livekit-secret-that-is-long-enough";

/// What the fake saw.
#[derive(Debug)]
pub enum SfuEvent {
    /// A participant joined with a valid token.
    Joined {
        identity: String,
        room: String,
        can_publish: bool,
        can_subscribe: bool,
    },
    /// One decoded Opus packet: its samples (48 kHz mono) and their RMS.
    Audio { samples: usize, rms: f64 },
    /// The participant sent `Leave`.
    Left,
}

/// A running fake; dropping it stops it like a crash would (sockets just close).
pub struct FakeLivekit {
    pub port: u16,
    pub events: mpsc::UnboundedReceiver<SfuEvent>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLivekit {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

impl FakeLivekit {
    /// Listens on `port` (0 = any free port).
    pub async fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the fake LiveKit binds");
        let port = listener.local_addr().unwrap().port();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                sessions.spawn(serve(stream, events_tx.clone(), stopped.clone()));
            }
        });
        Self {
            port,
            events,
            stop,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Stops the fake and waits until its sessions have closed their connections.
    pub async fn crash(mut self) -> u16 {
        let _ = self.stop.send(true);
        self.task.abort();
        let _ = (&mut self.task).await;
        self.port
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn send(ws: &mut Ws, message: Response) {
    let frame = proto::SignalResponse {
        message: Some(message),
    }
    .encode_to_vec();
    let _ = ws.send(Message::Binary(frame.into())).await;
}

/// The token of the WebSocket upgrade (`Authorization: Bearer`), checked with LiveKit's
/// verifier; a bad one is refused with 401 as LiveKit does.
fn check_token(req: &HttpRequest) -> Result<livekit_api::access_token::Claims, String> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("no bearer token")?;
    TokenVerifier::with_api_key(API_KEY, API_SECRET)
        .verify(token)
        .map_err(|e| e.to_string())
}

async fn serve(
    stream: tokio::net::TcpStream,
    events: mpsc::UnboundedSender<SfuEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut claims = None;
    // The signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let accepted = tokio_tungstenite::accept_hdr_async(
        stream,
        |req: &HttpRequest, resp: HttpResponse| -> Result<HttpResponse, ErrorResponse> {
            assert!(
                req.uri().path().ends_with("/rtc"),
                "joins on /rtc: {}",
                req.uri()
            );
            match check_token(req) {
                Ok(c) => {
                    claims = Some(c);
                    Ok(resp)
                }
                Err(e) => {
                    let mut refused = ErrorResponse::new(Some(e));
                    *refused.status_mut() =
                        tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                    Err(refused)
                }
            }
        },
    )
    .await;
    let (Ok(mut ws), Some(claims)) = (accepted, claims) else {
        return;
    };
    let _ = events.send(SfuEvent::Joined {
        identity: claims.sub.clone(),
        room: claims.video.room.clone(),
        // LiveKit reads an absent grant as allowed.
        can_publish: claims.video.can_publish.unwrap_or(true),
        can_subscribe: claims.video.can_subscribe.unwrap_or(true),
    });
    send(
        &mut ws,
        Response::Join(proto::JoinResponse {
            room: Some(proto::Room {
                sid: "RM_fake".into(),
                name: claims.video.room.clone(),
                ..Default::default()
            }),
            participant: Some(proto::ParticipantInfo {
                sid: "PA_fake".into(),
                identity: claims.sub.clone(),
                ..Default::default()
            }),
            server_version: "fake".into(),
            ping_interval: 1,
            ping_timeout: 10,
            server_info: Some(proto::ServerInfo::default()),
            ..Default::default()
        }),
    )
    .await;

    let (candidates_tx, mut candidates) =
        mpsc::unbounded_channel::<(proto::SignalTarget, RTCIceCandidateInit)>();
    let publisher = peer_connection(proto::SignalTarget::Publisher, &candidates_tx).await;
    let subscriber = peer_connection(proto::SignalTarget::Subscriber, &candidates_tx).await;
    publisher.on_track(Box::new({
        let events = events.clone();
        move |track, _, _| {
            let events = events.clone();
            Box::pin(async move {
                let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
                let mut out = vec![0i16; 5760];
                while let Ok((packet, _)) = track.read_rtp().await {
                    if packet.payload.is_empty() {
                        continue;
                    }
                    let n = decoder.decode(&packet.payload, &mut out, false).unwrap();
                    let sum: f64 = out[..n].iter().map(|s| f64::from(*s).powi(2)).sum();
                    let rms = (sum / n.max(1) as f64).sqrt();
                    let _ = events.send(SfuEvent::Audio { samples: n, rms });
                }
            })
        }
    }));

    // As LiveKit does in two-PeerConnection mode: offer the subscriber PeerConnection at once.
    let _ = subscriber
        .create_data_channel("_reliable", None)
        .await
        .unwrap();
    let offer = subscriber.create_offer(None).await.unwrap();
    subscriber
        .set_local_description(offer.clone())
        .await
        .unwrap();
    send(
        &mut ws,
        Response::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.sdp,
            id: 1,
            ..Default::default()
        }),
    )
    .await;

    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some((target, candidate)) = candidates.recv() => {
                send(&mut ws, Response::Trickle(proto::TrickleRequest {
                    candidate_init: serde_json::to_string(&candidate).unwrap(),
                    target: target as i32,
                    r#final: false,
                })).await;
            }
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { break };
                let Message::Binary(bytes) = frame else { continue };
                let Some(request) = proto::SignalRequest::decode(bytes.as_ref()).unwrap().message else {
                    continue;
                };
                match request {
                    Request::AddTrack(add) => {
                        assert_eq!(add.r#type, proto::TrackType::Audio as i32);
                        send(&mut ws, Response::TrackPublished(proto::TrackPublishedResponse {
                            cid: add.cid.clone(),
                            track: Some(proto::TrackInfo {
                                sid: "TR_fake".into(),
                                name: add.name.clone(),
                                r#type: proto::TrackType::Audio as i32,
                                ..Default::default()
                            }),
                        })).await;
                    }
                    Request::Offer(offer) => {
                        publisher
                            .set_remote_description(RTCSessionDescription::offer(offer.sdp).unwrap())
                            .await
                            .unwrap();
                        let answer = publisher.create_answer(None).await.unwrap();
                        publisher.set_local_description(answer.clone()).await.unwrap();
                        send(&mut ws, Response::Answer(proto::SessionDescription {
                            r#type: "answer".into(),
                            sdp: answer.sdp,
                            id: offer.id,
                            ..Default::default()
                        })).await;
                    }
                    Request::Answer(answer) => {
                        subscriber
                            .set_remote_description(RTCSessionDescription::answer(answer.sdp).unwrap())
                            .await
                            .unwrap();
                    }
                    Request::Trickle(trickle) => {
                        let candidate: RTCIceCandidateInit =
                            serde_json::from_str(&trickle.candidate_init).unwrap();
                        let pc = if trickle.target == proto::SignalTarget::Subscriber as i32 {
                            &subscriber
                        } else {
                            &publisher
                        };
                        let _ = pc.add_ice_candidate(candidate).await;
                    }
                    Request::PingReq(ping) => {
                        send(&mut ws, Response::PongResp(proto::Pong {
                            last_ping_timestamp: ping.timestamp,
                            timestamp: ping.timestamp,
                        })).await;
                    }
                    Request::Leave(_) => {
                        let _ = events.send(SfuEvent::Left);
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = publisher.close().await;
    let _ = subscriber.close().await;
}

async fn peer_connection(
    target: proto::SignalTarget,
    candidates: &mpsc::UnboundedSender<(proto::SignalTarget, RTCIceCandidateInit)>,
) -> Arc<RTCPeerConnection> {
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build();
    let pc = Arc::new(api.new_peer_connection(Default::default()).await.unwrap());
    let candidates = candidates.clone();
    pc.on_ice_candidate(Box::new(move |candidate| {
        let candidates = candidates.clone();
        Box::pin(async move {
            if let Some(init) = candidate.and_then(|c| c.to_json().ok()) {
                let _ = candidates.send((target, init));
            }
        })
    }));
    pc
}
