//! Black-box tests: the real application on loopback, real SQLite files and real
//! PostgreSQL databases. Needs both roles compiled in (the default features).
#![cfg(all(feature = "api", feature = "host"))]
// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod archive;
mod blank_air;
mod bounds;
mod broadcast;
mod bus_contract;
mod bus_tls;
mod callin_air;
mod callins;
mod claim_processes;
mod deploy_files;
mod engine;
mod fake_livekit;
mod fake_openai;
mod fake_openai_calls;
mod fake_realtime;
mod faulty_provider;
mod google_id;
mod health;
mod healthcheck;
mod helpers;
mod hostile;
mod instances;
mod livekit;
mod metrics;
mod openapi;
mod postgres;
mod programme_push;
mod provider_faults;
mod raw_ws;
mod room;
mod schedule;
mod shutdown;
mod split;
mod standby;
mod store_conformance;
mod stream;
mod studio;
mod telemetry;
mod web_app;
