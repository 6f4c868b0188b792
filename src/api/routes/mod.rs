//! The API's routes, a file per resource.

mod archive;
mod broadcast;
mod channels;
mod health;
pub mod openapi;
pub mod ptt;
mod queue;
pub mod room;
mod sockets;
mod stream;
mod studio;

use actix_web::middleware::from_fn;
use actix_web::web;

use crate::api::{ApiError, ApiState, Result};
use crate::db::Channel;
use crate::domain::ChannelName;
use crate::web::{require_bearer, require_bearer_to_write, resource};

/// Mounts the routes (the caller adds `ApiState` as app data). A known path asked with a
/// method it does not answer gets 405 with `Allow`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/health", "GET, HEAD")
            .route(web::get().to(health::health))
            .route(web::head().to(health::health)),
    )
    .service(
        resource("/ready", "GET, HEAD")
            .route(web::get().to(health::ready))
            .route(web::head().to(health::ready)),
    )
    .service(resource("/openapi.json", "GET").route(web::get().to(openapi::openapi_json)))
    .service(resource("/ws/broadcast", "GET").route(web::get().to(broadcast::broadcast_ws)))
    .service(resource("/ws/ptt", "GET").route(web::get().to(ptt::ptt_ws)))
    .service(
        // POST is public (a typed call-in); GET is the operators' listing (token checked
        // in the handler: a GET has no body to hold).
        resource("/v1/queue", "GET, POST")
            .route(web::post().to(queue::enqueue))
            .route(web::get().to(queue::list)),
    )
    .service(
        resource("/v1/queue/{id}/audio", "GET")
            .wrap(from_fn(require_bearer::<ApiState, _>))
            .route(web::get().to(queue::audio)),
    )
    .service(
        resource("/v1/queue/{id}", "PATCH")
            .wrap(from_fn(require_bearer::<ApiState, _>))
            .route(web::patch().to(queue::moderate)),
    )
    .service(resource("/v1/room/join", "POST").route(web::post().to(room::join)))
    .service(resource("/v1/channels", "GET").route(web::get().to(channels::list)))
    .service(
        // Public to read; the admin token (checked before the body) to replace.
        resource("/v1/channels/{name}/schedule", "GET, PUT")
            .wrap(from_fn(require_bearer_to_write::<ApiState, _>))
            .route(web::get().to(channels::schedule))
            .route(web::put().to(channels::replace)),
    )
    .service(
        resource("/v1/channels/{name}/schedule/{hour}", "PATCH")
            .wrap(from_fn(require_bearer::<ApiState, _>))
            .route(web::patch().to(channels::edit_hour)),
    )
    .service(
        resource("/v1/channels/{name}/stream", "GET, HEAD")
            .route(web::get().to(stream::stream_channel))
            .route(web::head().to(stream::head_stream)),
    )
    .service(resource("/v1/channels/{name}/archive", "GET").route(web::get().to(archive::list)))
    .service(
        // HEAD gets the same headers (type, length) without the body.
        resource("/v1/channels/{name}/archive/{file}", "GET, HEAD")
            .route(web::get().to(archive::file))
            .route(web::head().to(archive::file)),
    )
    .service(
        web::scope("/v1/studio")
            // The admin token is checked before anything reads a request's body.
            .wrap(from_fn(require_bearer::<ApiState, _>))
            .service(resource("/speak", "POST").route(web::post().to(studio::speak)))
            .service(resource("/script", "POST").route(web::post().to(studio::script)))
            .service(resource("/take-next", "POST").route(web::post().to(studio::take_next)))
            .service(resource("/health", "GET").route(web::get().to(health::health_for_operators))),
    );
}

/// The channel named in a path or query, checked against the store (a name that does not
/// parse cannot be a channel: 404 as well).
pub(super) async fn known_channel(state: &ApiState, name: &str) -> Result<ChannelName> {
    let channel = ChannelName::parse(name).map_err(|_| ApiError::unknown_channel(name))?;
    existing_channel(state, &channel).await?;
    Ok(channel)
}

/// The channel a request body names, or the default one, checked against the store.
pub(super) async fn channel_or_default(
    state: &ApiState,
    channel: Option<ChannelName>,
) -> Result<ChannelName> {
    let channel = channel.unwrap_or_else(|| state.default_channel.clone());
    existing_channel(state, &channel).await?;
    Ok(channel)
}

/// The store's record of `channel`, or 404 `unknown_channel`: the one place that asks
/// whether a channel exists.
pub(super) async fn existing_channel(state: &ApiState, channel: &ChannelName) -> Result<Channel> {
    state
        .store
        .channel_by_name(channel)
        .await?
        .ok_or_else(|| ApiError::unknown_channel(channel.as_str()))
}
