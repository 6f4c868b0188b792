//! Channels and their schedules: `GET /v1/channels` and `GET /v1/channels/{name}/schedule`
//! (public), `PUT /v1/channels/{name}/schedule` (the whole day) and
//! `PATCH /v1/channels/{name}/schedule/{hour}` (one hour), behind the admin token (checked
//! before the body is read). A change is saved in the store and pushed to the host at once
//! over the bus; a push the host does not take is retried with backoff until it does (and
//! the API pushes the programme on every connect of its link too).

use std::collections::BTreeSet;

use actix_web::{HttpResponse, web};
use chrono::Timelike;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::known_channel;
use crate::api::{ApiState, Result};
use crate::bus::ErrorBody;
use crate::db::{ScheduleEntry, SlotEdit};
use crate::domain::{Block, InvalidInput};

/// Longest prompt of one hour, in characters.
pub const MAX_PROMPT_CHARS: usize = 2000;

/// One hour as clients see and send it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hour {
    hour: u8,
    block: Block,
    prompt: Option<String>,
}

/// What a client sends for one hour: the block by its name, checked here so a wrong one
/// gets `invalid_block` rather than a JSON error.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HourEdit {
    /// 0-23; required in a PUT, optional (the path's) in a PATCH.
    #[schema(minimum = 0, maximum = 23)]
    hour: Option<i64>,
    /// Required in a PUT; in a PATCH, absent keeps the hour's block.
    #[schema(value_type = Option<Block>)]
    block: Option<String>,
    /// Absent: unchanged (PATCH) or none (PUT); `null` or blank: none. At most
    /// [`MAX_PROMPT_CHARS`] characters, no control characters but newlines and tabs.
    #[serde(default, deserialize_with = "serde_with_none::deserialize")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    prompt: Option<Option<String>>,
}

/// `null` and absent told apart: `Some(None)` is an explicit `null`.
mod serde_with_none {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayEdit {
    /// All 24 hours, each once.
    #[schema(min_items = 24, max_items = 24)]
    hours: Vec<HourEdit>,
}

fn invalid(code: &'static str, message: impl Into<String>) -> InvalidInput {
    InvalidInput::new(code, message)
}

fn parse_hour(raw: i64) -> std::result::Result<u8, InvalidInput> {
    u8::try_from(raw)
        .ok()
        .filter(|h| *h < 24)
        .ok_or_else(|| invalid("invalid_hour", format!("hour {raw} is not 0-23")))
}

fn parse_block(raw: Option<&str>) -> std::result::Result<Block, InvalidInput> {
    raw.ok_or_else(|| invalid("invalid_block", "block is missing"))?
        .parse()
}

/// A prompt: trimmed, blank as none, at most [`MAX_PROMPT_CHARS`], no control characters
/// but newlines and tabs.
fn parse_prompt(raw: Option<String>) -> std::result::Result<Option<String>, InvalidInput> {
    let Some(raw) = raw else { return Ok(None) };
    let prompt = raw.trim();
    if prompt.is_empty() {
        return Ok(None);
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(invalid(
            "prompt_too_long",
            format!("the prompt has {chars} characters; the limit is {MAX_PROMPT_CHARS}"),
        ));
    }
    if prompt
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(
            "invalid_prompt",
            "the prompt contains control characters",
        ));
    }
    Ok(Some(prompt.to_owned()))
}

/// `GET /v1/channels`: every channel, by name, and how they can be heard: `livekit` says
/// whether `POST /v1/room/join` gives tokens (the web app goes straight to the HTTP stream
/// when not).
#[utoipa::path(
    get, path = "/v1/channels", operation_id = "list_channels", tag = "channels",
    responses((status = 200, description = "Every channel", body = ChannelList))
)]
pub async fn list(state: web::Data<ApiState>) -> Result<HttpResponse> {
    let channels = state
        .store
        .list_channels()
        .await?
        .into_iter()
        .map(|c| ChannelSummary {
            name: c.name,
            live: c.live,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ChannelList {
        channels,
        livekit: state.livekit.credentials.is_ok(),
    }))
}

/// The answer of `GET /v1/channels`.
#[derive(Serialize, ToSchema)]
pub struct ChannelList {
    channels: Vec<ChannelSummary>,
    /// Whether `POST /v1/room/join` gives LiveKit tokens.
    livekit: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelSummary {
    name: crate::domain::ChannelName,
    live: bool,
}

/// A channel's schedule, as the schedule routes answer it.
#[derive(Serialize, ToSchema)]
pub struct Schedule<'a> {
    channel: &'a crate::domain::ChannelName,
    /// The station's time zone (IANA name): the hours are its hours.
    timezone: &'static str,
    /// The hour it is there now.
    current_hour: u32,
    /// The 24 hours.
    hours: Vec<Hour>,
    /// After a change: whether the host took the new programme at once (else it is
    /// retried until it does).
    #[serde(skip_serializing_if = "Option::is_none")]
    host_updated: Option<bool>,
}

/// The schedule as answered: the channel, its time zone, the hour it is there now, and
/// the 24 hours.
async fn answer(
    state: &ApiState,
    channel: &crate::domain::ChannelName,
    host_updated: Option<bool>,
) -> Result<HttpResponse> {
    let id = channel_id(state, channel).await?;
    let hours: Vec<Hour> = state
        .store
        .schedule(id)
        .await?
        .into_iter()
        .map(|e: ScheduleEntry| Hour {
            hour: e.hour,
            block: e.block,
            prompt: e.prompt,
        })
        .collect();
    let now = chrono::Utc::now().with_timezone(&state.timezone);
    Ok(HttpResponse::Ok().json(Schedule {
        channel,
        timezone: state.timezone.name(),
        current_hour: now.hour(),
        hours,
        host_updated,
    }))
}

async fn channel_id(state: &ApiState, channel: &crate::domain::ChannelName) -> Result<uuid::Uuid> {
    Ok(super::existing_channel(state, channel).await?.id)
}

/// `GET /v1/channels/{name}/schedule`.
#[utoipa::path(
    get, path = "/v1/channels/{name}/schedule", tag = "channels",
    params(("name" = String, Path, description = "The channel's name", example = "radio24")),
    responses(
        (status = 200, description = "The channel's day", body = Schedule),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
    )
)]
pub async fn schedule(state: web::Data<ApiState>, name: web::Path<String>) -> Result<HttpResponse> {
    let channel = known_channel(&state, &name).await?;
    answer(&state, &channel, None).await
}

/// Sends the store's programme to the host; whether it took it at the first attempt (when
/// not, the push is retried with backoff until the host takes it: see
/// [`crate::api::programme::ProgrammePusher`]).
async fn push_to_host(state: &ApiState) -> bool {
    state.programme.push().await
}

/// `PUT /v1/channels/{name}/schedule` `{"hours": [{hour, block, prompt?}, ...]}`: all 24
/// hours, each once.
#[tracing::instrument(skip_all, fields(channel = %name))]
#[utoipa::path(
    put, path = "/v1/channels/{name}/schedule", tag = "channels",
    description = "Replaces the whole day (24 hours, each once) and pushes it to the host.",
    params(("name" = String, Path, description = "The channel's name", example = "radio24")),
    request_body = DayEdit,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The channel's new day", body = Schedule),
        (status = 400, description = "`invalid_hour`, `invalid_block`, `invalid_schedule`, `prompt_too_long`, `invalid_prompt`", body = ErrorBody),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
    )
)]
pub async fn replace(
    state: web::Data<ApiState>,
    name: web::Path<String>,
    body: web::Json<DayEdit>,
) -> Result<HttpResponse> {
    let channel = known_channel(&state, &name).await?;
    let mut day = Vec::with_capacity(24);
    let mut seen = BTreeSet::new();
    for edit in body.into_inner().hours {
        let hour = parse_hour(
            edit.hour
                .ok_or_else(|| invalid("invalid_hour", "an hour is missing its `hour`"))?,
        )?;
        if !seen.insert(hour) {
            return Err(invalid("invalid_schedule", format!("hour {hour} is given twice")).into());
        }
        let block = parse_block(edit.block.as_deref())?;
        let prompt = parse_prompt(edit.prompt.flatten())?;
        day.push((hour, block, prompt));
    }
    if day.len() != 24 {
        return Err(invalid(
            "invalid_schedule",
            format!("a day has 24 hours; {} were given", day.len()),
        )
        .into());
    }
    let id = channel_id(&state, &channel).await?;
    // One transaction: the day is replaced whole, or not at all.
    let slots = day
        .into_iter()
        .map(|(hour, block, prompt)| SlotEdit {
            hour,
            block,
            prompt,
        })
        .collect();
    state.store.set_schedule_slots(id, slots).await?;
    tracing::info!("schedule replaced");
    let updated = push_to_host(&state).await;
    answer(&state, &channel, Some(updated)).await
}

/// `PATCH /v1/channels/{name}/schedule/{hour}` `{block?, prompt?}`: one hour; what is left
/// out stays as it was (`"prompt": null` clears the prompt).
#[tracing::instrument(skip_all, fields(channel = %path.0, hour = %path.1))]
#[utoipa::path(
    patch, path = "/v1/channels/{name}/schedule/{hour}", tag = "channels",
    description = "Changes one hour; what is left out stays as it was (`\"prompt\": null` clears the prompt).",
    params(("name" = String, Path, description = "The channel's name", example = "radio24"), ("hour" = String, Path, description = "0-23", example = "9")),
    request_body = HourEdit,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The channel's new day", body = Schedule),
        (status = 400, description = "`invalid_hour`, `invalid_block`, `invalid_schedule`, `prompt_too_long`, `invalid_prompt`", body = ErrorBody),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
    )
)]
pub async fn edit_hour(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    body: web::Json<HourEdit>,
) -> Result<HttpResponse> {
    let (name, hour) = path.into_inner();
    let channel = known_channel(&state, &name).await?;
    let hour = parse_hour(
        hour.parse()
            .map_err(|_| invalid("invalid_hour", "the hour in the path is not a number"))?,
    )?;
    let edit = body.into_inner();
    if edit.hour.is_some_and(|h| h != i64::from(hour)) {
        return Err(invalid("invalid_hour", "the body names another hour than the path").into());
    }
    let id = channel_id(&state, &channel).await?;
    let current = state
        .store
        .schedule(id)
        .await?
        .into_iter()
        .find(|e| e.hour == hour);
    let block = match edit.block.as_deref() {
        Some(raw) => parse_block(Some(raw))?,
        None => current
            .as_ref()
            .map(|e| e.block)
            .ok_or_else(|| invalid("invalid_block", "this hour has no block yet: give one"))?,
    };
    let prompt = match edit.prompt {
        Some(given) => parse_prompt(given)?,
        None => current.and_then(|e| e.prompt),
    };
    state
        .store
        .set_schedule_slot(id, hour, block, prompt.as_deref())
        .await?;
    tracing::info!(%block, "schedule hour changed");
    let updated = push_to_host(&state).await;
    answer(&state, &channel, Some(updated)).await
}
