//! The config loader (`Settings::load`) with arbitrary TOML in the config folder's
//! `default.toml` and arbitrary environment overrides: the flat names the deployments use
//! (`PORT`, `DATABASE_URL`, ...) and `RADIO24__SECTION__KEY` names. Loading must give
//! settings or a `ConfigError`, never a panic, and settings it accepts must be usable by what
//! reads them at startup.

#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use radio24::config::{Settings, env_names};
use radio24_fuzz::{scratch_dir, write_scratch};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Flat names, picked from the ones the process reads.
    flat: Vec<(u8, String)>,
    /// `RADIO24__` + the name: nested keys, unknown keys, lists.
    nested: Vec<(String, String)>,
    /// Last, so a seed is two zero bytes (no variables) and then a TOML file.
    toml: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let dir = scratch_dir("config");
    write_scratch(&dir.join("default.toml"), input.toml.as_bytes());
    let names: Vec<&str> = env_names()
        // `RADIO24_ENV` names a file: kept to the one that exists (or none) so the loader
        // reads TOML rather than failing on a missing path every time.
        .filter(|name| *name != "RADIO24_ENV")
        .collect();
    let mut env: HashMap<String, String> = input
        .flat
        .into_iter()
        .map(|(pick, value)| (names[usize::from(pick) % names.len()].to_owned(), value))
        .collect();
    env.extend(
        input
            .nested
            .into_iter()
            .map(|(name, value)| (format!("RADIO24__{name}"), value)),
    );
    if env.contains_key("RADIO24__ENV") {
        env.insert("RADIO24_ENV".to_owned(), "default".to_owned());
    }
    if let Ok(settings) = Settings::load(&dir, &env) {
        let _ = settings.database_target();
        let _ = settings.livekit.missing_env();
        let _ = settings.livekit.publisher_url();
        let _ = settings.bus.audience();
        let _ = settings.archive.enabled_dir();
    }
});
