//! Listener route: `POST /v1/room/join` hands a listener a LiveKit access token for a
//! channel's room (the room is named after the channel), subscribe-only, so the browser can
//! join the room and hear the station. No auth: anyone who may listen may ask; a per-client
//! rate limit keeps one client from minting tokens in a loop.
//!
//! Config keys read (through `ApiState`): `livekit.api_key`, `livekit.api_secret`,
//! `livekit.ws_url` (`LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`, `LIVEKIT_WS_URL`),
//! `livekit.token_ttl_secs`, `livekit.join_per_minute`, `station.default_channel`.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use livekit_api::access_token::{AccessToken, Claims, VideoGrants};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, ApiState, Result};
use crate::bus::ErrorBody;
use crate::domain::ChannelName;

/// Longest listener display name, in characters; longer names are cut, not refused, so a
/// page that sends a long nickname still gets its listener in.
pub const MAX_LISTENER_NAME: usize = 64;

/// Body of `POST /v1/room/join`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The channel to listen to; `station.default_channel` when absent.
    #[serde(default)]
    pub channel: Option<ChannelName>,
    /// Display name shown to other participants; generated when absent or empty.
    #[serde(default)]
    pub name: Option<String>,
}

/// Answer of `POST /v1/room/join`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JoinAnswer {
    /// LiveKit access token (JWT, HS256), subscribe-only, for `room`.
    pub token: String,
    /// The LiveKit server to connect to (`livekit.ws_url`).
    pub url: String,
    /// The room, named after the channel.
    pub room: String,
    /// `listener-<uuid>`, unique to this token.
    pub identity: String,
    /// When the token stops being accepted for joining.
    pub expires_at: DateTime<Utc>,
}

/// The display name to put in a token: control characters removed, trimmed, cut to
/// [`MAX_LISTENER_NAME`] characters; `fallback` when nothing is left.
pub fn listener_name(raw: Option<&str>, fallback: impl FnOnce() -> String) -> String {
    let cleaned: String = raw
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let cut: String = cleaned.trim().chars().take(MAX_LISTENER_NAME).collect();
    // The cut may have ended on a space.
    let name = cut.trim_end();
    if name.is_empty() {
        fallback()
    } else {
        name.to_owned()
    }
}

#[tracing::instrument(skip_all, fields(client, channel, identity))]
#[utoipa::path(
    post, path = "/v1/room/join", tag = "listen",
    description = "A subscribe-only LiveKit access token for a channel's room.",
    request_body = JoinRequest,
    responses(
        (status = 200, description = "A token", body = JoinAnswer),
        (status = 400, description = "`invalid_channel`", body = ErrorBody),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`Retry-After` says when to try again)", body = ErrorBody),
        (status = 503, description = "`livekit_not_configured`: the message names the settings to set", body = ErrorBody),
    )
)]
pub async fn join(
    req: HttpRequest,
    state: web::Data<ApiState>,
    body: web::Json<JoinRequest>,
) -> Result<HttpResponse> {
    let client = state.client_key(&req);
    tracing::Span::current().record("client", client.as_str());
    state.limits.join.check(&client)?;

    let credentials = state
        .livekit
        .credentials
        .as_ref()
        .map_err(|missing| ApiError::LivekitNotConfigured(missing.clone()))?;

    let body = body.into_inner();
    let channel = super::channel_or_default(&state, body.channel).await?;

    let id = uuid::Uuid::new_v4();
    let identity = format!("listener-{id}");
    let name = listener_name(body.name.as_deref(), || {
        format!("listener-{}", &id.simple().to_string()[..4])
    });
    tracing::Span::current()
        .record("channel", channel.as_str())
        .record("identity", identity.as_str());

    let token =
        AccessToken::with_api_key(&credentials.api_key, credentials.api_secret.expose_secret())
            .with_ttl(state.livekit.token_ttl)
            .with_identity(&identity)
            .with_name(&name)
            .with_grants(VideoGrants {
                room_join: true,
                room: channel.to_string(),
                can_subscribe: Some(true),
                // Listeners only listen: no audio, no data messages, no renaming themselves.
                can_publish: Some(false),
                can_publish_data: Some(false),
                can_update_own_metadata: Some(false),
                ..VideoGrants::default()
            })
            .to_jwt()
            .map_err(ApiError::LivekitToken)?;
    // Read the expiry back from the token itself, so `expires_at` is exactly its `exp`.
    let claims = Claims::from_unverified(&token).map_err(ApiError::LivekitToken)?;
    let expires_at = i64::try_from(claims.exp)
        .ok()
        .and_then(|exp| DateTime::from_timestamp(exp, 0))
        .unwrap_or_else(|| Utc::now() + state.livekit.token_ttl);
    tracing::debug!("join token issued");

    Ok(HttpResponse::Ok()
        // A token is a credential: no cache may keep it.
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(JoinAnswer {
            token,
            url: credentials.ws_url.clone(),
            room: channel.to_string(),
            identity,
            expires_at,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fallback() -> String {
        "generated".to_owned()
    }

    #[test]
    fn names_are_cleaned_trimmed_and_cut() {
        assert_eq!(listener_name(Some("  Aiko "), fallback), "Aiko");
        assert_eq!(listener_name(Some("A\u{7}i\tk\no\u{0}"), fallback), "Aiko");
        assert_eq!(listener_name(Some("\u{1b}[31m red"), fallback), "[31m red");
        let long = "あ".repeat(100);
        assert_eq!(
            listener_name(Some(&long), fallback),
            "あ".repeat(MAX_LISTENER_NAME)
        );
        // A cut that ends on a space leaves no trailing space.
        let spaced = format!("{} tail", "x".repeat(MAX_LISTENER_NAME - 1));
        assert_eq!(
            listener_name(Some(&spaced), fallback),
            "x".repeat(MAX_LISTENER_NAME - 1)
        );
    }

    #[test]
    fn empty_names_are_generated() {
        for raw in [None, Some(""), Some("   "), Some("\u{7}\n\t")] {
            assert_eq!(listener_name(raw, fallback), "generated", "{raw:?}");
        }
    }
}
