//! The API's routes, a file per resource.

mod archive;
mod broadcast;
mod health;
pub mod room;
mod stream;
mod studio;

use actix_web::middleware::from_fn;
use actix_web::web;

use crate::api::ApiState;
use crate::web::require_bearer;

/// Mounts the routes (the caller adds `ApiState` as app data).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health))
        .route("/health", web::head().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/ready", web::head().to(health::ready))
        .route("/ws/broadcast", web::get().to(broadcast::broadcast_ws))
        .route("/v1/room/join", web::post().to(room::join))
        .route(
            "/v1/channels/{name}/stream",
            web::get().to(stream::stream_channel),
        )
        .route(
            "/v1/channels/{name}/stream",
            web::head().to(stream::head_stream),
        )
        .route("/v1/channels/{name}/archive", web::get().to(archive::list))
        .route(
            "/v1/channels/{name}/archive/{file}",
            web::get().to(archive::file),
        )
        .service(
            web::scope("/v1/studio")
                // The admin token is checked before anything reads a request's body.
                .wrap(from_fn(require_bearer::<ApiState, _>))
                .route("/speak", web::post().to(studio::speak))
                .route("/script", web::post().to(studio::script)),
        );
}
