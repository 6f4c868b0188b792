//! The deployment files (Dockerfile, docker-compose.yml, fly.toml, cloudbuild.yaml), checked
//! against the code, since no Docker engine or cloud runs here: every command they run
//! parses with the real CLI, every environment variable they set is one the settings read
//! (the image's and the service's env together go through `Settings::load`, which refuses
//! unknown `RADIO24__` keys, and the values are checked where they landed), ports match the
//! config defaults, and each platform's must-haves are there (compose's mounted `deploy/`
//! files, Cloud Run's singleton host, Fly's release command and checks).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use clap::Parser;
use radio24::cli::{Cli, Command, Role};
use radio24::config::{BusAuth, DatabaseTarget, Settings, env_names};
use secrecy::ExposeSecret;
use serde_norway::Value as Yaml;

use crate::helpers::config_dir;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(file: &str) -> String {
    std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The defaults every file must agree with.
fn defaults() -> Settings {
    Settings::load(&config_dir(), &HashMap::new()).unwrap()
}

/// Parses `radio24 <args>` with the real CLI; the role, when there is one, must be valid.
fn assert_command(file: &str, args: &[&str]) -> Command {
    let argv: Vec<&str> = std::iter::once("radio24")
        .chain(args.iter().copied())
        .collect();
    let cli = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{file}: `radio24 {}` does not parse: {e}", args.join(" ")));
    match &cli.command {
        Command::Serve { role } | Command::Healthcheck { role, .. } => {
            role.parse::<Role>()
                .unwrap_or_else(|e| panic!("{file}: `radio24 {}`: {e}", args.join(" ")));
        }
        Command::Migrate => {}
    }
    cli.command
}

fn role_of(command: &Command) -> Option<Role> {
    match command {
        Command::Serve { role } => Some(role.parse().unwrap()),
        _ => None,
    }
}

/// Loads the settings a container gets from `env`: every name must be one the settings
/// read (flat names from the config's list; `RADIO24__…` names are refused by the load
/// when they name no key).
fn load_env(file: &str, env: &BTreeMap<String, String>) -> Settings {
    let known: Vec<&str> = env_names().collect();
    for name in env.keys() {
        assert!(
            name.starts_with("RADIO24__") || known.contains(&name.as_str()),
            "{file}: {name} is set but radio24 reads no such variable (known: {known:?})"
        );
    }
    let env: HashMap<String, String> = env.clone().into_iter().collect();
    Settings::load(&config_dir(), &env)
        .unwrap_or_else(|e| panic!("{file}: these settings do not load: {e}\n{env:?}"))
}

// ---------------------------------------------------------------------------------------
// Dockerfile (line-based)

/// One instruction: keyword and the rest, continuation lines joined.
struct Instruction {
    keyword: String,
    rest: String,
}

/// Stages in order: (name or image, instructions).
fn dockerfile() -> Vec<(String, String, Vec<Instruction>)> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(
        current.is_empty(),
        "Dockerfile ends inside a continued line"
    );
    let mut stages: Vec<(String, String, Vec<Instruction>)> = Vec::new();
    for line in logical {
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let rest = rest.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let image = words[0].to_owned();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => image.clone(),
            };
            stages.push((name, image, Vec::new()));
        } else if keyword != "ARG" || !stages.is_empty() {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("Dockerfile: {keyword} before FROM"))
                .2
                .push(Instruction { keyword, rest });
        }
    }
    stages
}

/// `["a", "b"]` (exec form) as words.
fn exec_form(file: &str, json: &str) -> Vec<String> {
    serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("{file}: {json} is not the exec form [\"…\"]: {e}"))
}

/// `ENV A=1 B=2` (values without spaces, optionally quoted).
fn env_pairs(rest: &str) -> Vec<(String, String)> {
    rest.split_whitespace()
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("Dockerfile: ENV {pair}: use NAME=value"));
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

/// The runtime image's environment (every container platform starts from it).
fn image_env() -> BTreeMap<String, String> {
    let stages = dockerfile();
    let (_, _, runtime) = stages.last().unwrap();
    runtime
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| env_pairs(&i.rest))
        .collect()
}

#[test]
fn dockerfile_builds_with_chef_and_node_and_runs_small_and_unprivileged() {
    let file = "Dockerfile";
    let stages = dockerfile();
    let all: Vec<&Instruction> = stages.iter().flat_map(|(_, _, i)| i).collect();
    let runs = |needle: &str| {
        all.iter()
            .any(|i| i.keyword == "RUN" && i.rest.contains(needle))
    };
    for needle in [
        "cargo chef prepare",
        "cargo chef cook --release --locked",
        "npm ci",
        "npm run build",
        "--features \"$FEATURES\"",
    ] {
        assert!(runs(needle), "{file}: no RUN with `{needle}`");
    }
    assert!(
        all.iter().any(|i| i.keyword == "RUN"
            && i.rest.contains("apt-get install")
            && i.rest.contains("cmake")),
        "{file}: the build stage needs cmake (libopus)"
    );
    assert!(
        all.iter()
            .any(|i| i.keyword == "ARG" && i.rest.starts_with("FEATURES=\"api,host\"")),
        "{file}: ARG FEATURES=\"api,host\" (both roles by default)"
    );
    // The dependency layer is cooked before the sources are copied in.
    let build = &stages
        .iter()
        .find(|(_, _, i)| i.iter().any(|i| i.rest.contains("cargo chef cook")))
        .unwrap()
        .2;
    let cook = build
        .iter()
        .position(|i| i.rest.contains("cargo chef cook"))
        .unwrap();
    let sources = build
        .iter()
        .position(|i| i.keyword == "COPY" && i.rest.starts_with("src "))
        .unwrap_or_else(|| panic!("{file}: the build stage copies src"));
    assert!(
        cook < sources,
        "{file}: cook the dependencies before copying src"
    );
    assert!(
        stages
            .iter()
            .any(|(_, image, _)| image.starts_with("node:20")),
        "{file}: a Node 20 stage builds the web app"
    );

    let (_, image, runtime) = stages.last().unwrap();
    assert_eq!(image, "debian:bookworm-slim", "{file}: the runtime stage");
    let find = |keyword: &str| -> Vec<&Instruction> {
        runtime.iter().filter(|i| i.keyword == keyword).collect()
    };
    let install = find("RUN")
        .into_iter()
        .find(|i| i.rest.contains("apt-get install"))
        .unwrap_or_else(|| panic!("{file}: the runtime installs packages"));
    for package in ["ca-certificates", "espeak-ng"] {
        assert!(
            install.rest.contains(package),
            "{file}: runtime lacks {package}"
        );
    }
    let user = &find("USER")
        .last()
        .unwrap_or_else(|| panic!("{file}: no USER"))
        .rest;
    assert!(
        !matches!(user.as_str(), "root" | "0" | "0:0"),
        "{file}: runs as root"
    );
    let entrypoint = exec_form(file, &find("ENTRYPOINT")[0].rest);
    assert_eq!(entrypoint, ["radio24"], "{file}: ENTRYPOINT");
    let cmd = exec_form(file, &find("CMD")[0].rest);
    let command = assert_command(file, &cmd.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        role_of(&command),
        Some(Role::All),
        "{file}: CMD serves role all"
    );
    let health = &find("HEALTHCHECK")[0].rest;
    let (_, check) = health
        .split_once("CMD ")
        .unwrap_or_else(|| panic!("{file}: HEALTHCHECK without CMD"));
    let check = exec_form(file, check.trim());
    assert_eq!(check[0], "radio24", "{file}: HEALTHCHECK runs radio24");
    let command = assert_command(
        file,
        &check[1..].iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(
        matches!(command, Command::Healthcheck { .. }),
        "{file}: {check:?}"
    );

    // Ports: what the roles listen on by default.
    let defaults = defaults();
    let mut exposed: Vec<u16> = find("EXPOSE")
        .iter()
        .flat_map(|i| i.rest.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().unwrap())
        .collect();
    exposed.sort_unstable();
    assert_eq!(
        exposed,
        [defaults.server.api_port, defaults.server.host_port],
        "{file}: EXPOSE"
    );

    // The image's env loads, and serves the web app the Node stage built.
    let env = image_env();
    let settings = load_env(file, &env);
    assert_eq!(
        settings.server.bind, "0.0.0.0",
        "{file}: production.toml listens everywhere"
    );
    let web_copy = find("COPY")
        .into_iter()
        .find(|i| i.rest.contains("--from=web"))
        .unwrap_or_else(|| panic!("{file}: the runtime copies the web app"));
    let target = web_copy.rest.split_whitespace().last().unwrap();
    assert!(
        web_copy.rest.contains("/out "),
        "{file}: copies frontend/out: {}",
        web_copy.rest
    );
    assert_eq!(
        settings.server.web_dir, target,
        "{file}: server.web_dir points at the web app"
    );
}

#[test]
fn dockerignore_keeps_build_output_and_data_out() {
    let text = read(".dockerignore");
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in [
        "target",
        "frontend/node_modules",
        "frontend/.next",
        "frontend/out",
        "data",
        ".git",
    ] {
        assert!(
            lines.contains(&needed),
            ".dockerignore lacks {needed}: {lines:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

/// `${NAME:-default}` and `${NAME}` as docker compose resolves them with nothing set.
fn compose_default(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        if let Some((_, default)) = inner.split_once(":-") {
            out.push_str(default);
        } else {
            assert!(
                !inner.contains(":?"),
                "docker-compose.yml: {value} is required; `docker compose up` must need no env"
            );
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn yaml(file: &str) -> Yaml {
    let mut value: Yaml =
        serde_norway::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{file}: merge keys: {e}"));
    value
}

fn strings(value: &Yaml) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|v| match v {
                    Yaml::String(s) => s.clone(),
                    other => serde_norway::to_string(other).unwrap().trim().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn service_env(file: &str, name: &str, service: &Yaml) -> BTreeMap<String, String> {
    let mut env = image_env();
    if let Some(map) = service["environment"].as_mapping() {
        for (k, v) in map {
            let k = k.as_str().unwrap().to_owned();
            let v = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Null => String::new(),
                other => serde_norway::to_string(other).unwrap().trim().to_owned(),
            };
            env.insert(k, compose_default(&v));
        }
    } else {
        assert!(
            service["environment"].is_null(),
            "{file}: {name}'s environment is a mapping"
        );
    }
    env
}

#[test]
fn compose_runs_the_station_split_with_the_seeds_names_and_no_required_env() {
    let file = "docker-compose.yml";
    let compose = yaml(file);
    let services = compose["services"].as_mapping().unwrap();
    let defaults = defaults();
    for needed in [
        "db",
        "livekit",
        "migrate",
        "host",
        "api",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(needed), "{file}: no service {needed}");
    }
    assert!(
        compose["services"]["db"]["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:16")
    );
    assert!(
        !compose["services"]["db"]["healthcheck"]["test"].is_null(),
        "{file}: db health check"
    );
    let livekit = &compose["services"]["livekit"];
    assert!(
        livekit["image"]
            .as_str()
            .unwrap()
            .starts_with("livekit/livekit-server")
    );
    assert!(strings(&livekit["command"]).contains(&"--dev".to_owned()));
    let livekit_ports = strings(&livekit["ports"]);
    for port in ["7880:7880", "7881:7881"] {
        assert!(
            livekit_ports.contains(&port.to_owned()),
            "{file}: livekit {port}"
        );
    }
    assert!(
        livekit_ports.iter().any(|p| p.ends_with("/udp")),
        "{file}: livekit's UDP port"
    );

    let mut roles = BTreeMap::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        if service["build"].is_null() {
            continue;
        }
        let command = strings(&service["command"]);
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let parsed = assert_command(file, &args);
        let env = service_env(file, name, service);
        let settings = load_env(&format!("{file} ({name})"), &env);
        if let Some(test) = service["healthcheck"]["test"].as_sequence() {
            let test = strings(&Yaml::Sequence(test.clone()));
            assert_eq!(
                &test[..2],
                ["CMD", "radio24"],
                "{file}: {name}'s health check"
            );
            let check: Vec<&str> = test[2..].iter().map(String::as_str).collect();
            match assert_command(file, &check) {
                Command::Healthcheck {
                    role, url: None, ..
                } => assert_eq!(
                    Some(role.parse::<Role>().unwrap()),
                    role_of(&parsed),
                    "{file}: {name} is checked on its own role's port"
                ),
                other => panic!("{file}: {name}'s health check runs {other:?}"),
            }
        }
        roles.insert(name.to_owned(), (parsed, settings, service.clone()));
    }
    let (migrate, settings, _) = &roles["migrate"];
    assert!(matches!(migrate, Command::Migrate));
    assert!(
        matches!(settings.database_target(), DatabaseTarget::Postgres(ref u) if u.expose_secret().contains("@db:5432/radio24")),
        "{file}: migrate uses the db service through POSTGRES_*"
    );
    let (host, host_settings, host_service) = &roles["host"];
    assert_eq!(role_of(host), Some(Role::Host));
    assert!(
        strings(&host_service["expose"]).contains(&defaults.server.host_port.to_string())
            || host_service["expose"].is_null(),
        "{file}: the host's port"
    );
    assert!(
        host_settings.livekit.missing_env().is_empty(),
        "{file}: the host publishes to livekit"
    );
    assert_eq!(
        host_settings.livekit.publisher_url().as_deref(),
        Some("ws://livekit:7880")
    );
    let (api, api_settings, api_service) = &roles["api"];
    assert_eq!(role_of(api), Some(Role::Api));
    assert_eq!(
        strings(&api_service["ports"]),
        [format!("{0}:{0}", defaults.server.api_port)],
        "{file}: the API's port"
    );
    assert_eq!(
        api_settings.bus.host_url,
        format!("http://host:{}", defaults.server.host_port),
        "{file}: the API finds the host by its service name and port"
    );
    assert!(matches!(
        api_settings.database_target(),
        DatabaseTarget::Postgres(_)
    ));
    assert!(
        api_settings.livekit.missing_env().is_empty(),
        "{file}: listeners get join tokens"
    );
    // Both roles share one bus token (a labelled development default, overridable).
    let token = |s: &Settings| s.bus.token.as_ref().map(|t| t.expose_secret().to_owned());
    assert!(token(api_settings).is_some());
    assert_eq!(
        token(api_settings),
        token(host_settings),
        "{file}: one bus token"
    );
    // Seed names where the seed has them.
    let api_env = service_env(file, "api", api_service);
    for seed in [
        "POSTGRES_HOST",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
        "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET",
        "OPENAI_API_KEY",
        "ALLOWED_ORIGIN",
    ] {
        assert!(
            api_env.contains_key(seed),
            "{file}: the API takes the seed's {seed}"
        );
    }
    // Order: the API starts once migrate finished and the host is healthy.
    let api_deps = &compose["services"]["api"]["depends_on"];
    assert_eq!(
        api_deps["migrate"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    assert!(!api_deps["host"].is_null());

    // The monitoring profile mounts the files under deploy/.
    let mut mounted = BTreeMap::new();
    for name in ["prometheus", "grafana"] {
        let service = &compose["services"][name];
        assert_eq!(
            strings(&service["profiles"]),
            ["monitoring"],
            "{file}: {name}'s profile"
        );
        for volume in strings(&service["volumes"]) {
            let mut parts = volume.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().unwrap());
            let source = source.trim_start_matches("./");
            assert!(
                source.starts_with("deploy/"),
                "{file}: {name} mounts {source}"
            );
            mounted.insert(target.to_owned(), source.to_owned());
        }
    }
    for (target, source) in [
        (
            "/etc/prometheus/prometheus.yml",
            "deploy/prometheus/prometheus.yml",
        ),
        ("/etc/prometheus/alerts.yml", "deploy/prometheus/alerts.yml"),
        ("/etc/grafana/provisioning", "deploy/grafana/provisioning"),
        ("/var/lib/grafana/dashboards", "deploy/grafana/dashboards"),
    ] {
        assert_eq!(
            mounted.get(target).map(String::as_str),
            Some(source),
            "{file}: {target}"
        );
        // The files are written on another branch (the metrics work): until deploy/ is
        // here the mounts are checked by path only; once it is, every one must exist.
        if repo().join("deploy").is_dir() {
            assert!(
                repo().join(source).exists(),
                "{file}: mounts {source}, which is missing"
            );
        } else {
            eprintln!("SKIPPED: deploy/ is not on this branch; {source} is checked by path only");
        }
    }
    // When the files are here, what they name inside the containers is what is mounted.
    let prometheus = repo().join("deploy/prometheus/prometheus.yml");
    if prometheus.exists() {
        let config: Yaml =
            serde_norway::from_str(&std::fs::read_to_string(&prometheus).unwrap()).unwrap();
        for rule in strings(&config["rule_files"]) {
            let inside = if rule.starts_with('/') {
                rule.clone()
            } else {
                format!("/etc/prometheus/{rule}")
            };
            assert!(
                mounted.contains_key(&inside),
                "prometheus.yml loads {rule}, which compose does not mount"
            );
        }
    }
    let providers = repo().join("deploy/grafana/provisioning/dashboards");
    if providers.is_dir() {
        for entry in std::fs::read_dir(&providers).unwrap() {
            let path = entry.unwrap().path();
            let config: Yaml =
                serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for provider in config["providers"].as_sequence().into_iter().flatten() {
                let dir = provider["options"]["path"].as_str().unwrap_or_default();
                assert!(
                    dir.starts_with("/var/lib/grafana/dashboards"),
                    "{}: dashboards at {dir}, compose mounts them at /var/lib/grafana/dashboards",
                    path.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// fly.toml

#[test]
fn fly_runs_two_process_groups_migrates_on_release_and_checks_the_api() {
    let file = "fly.toml";
    let fly: toml::Value = toml::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let defaults = defaults();
    let release = fly["deploy"]["release_command"].as_str().unwrap();
    let release: Vec<&str> = release.split_whitespace().collect();
    assert!(
        matches!(assert_command(file, &release), Command::Migrate),
        "{file}: release_command"
    );

    let mut env = image_env();
    for (k, v) in fly["env"].as_table().unwrap() {
        env.insert(k.clone(), v.as_str().unwrap().to_owned());
    }
    let settings = load_env(file, &env);
    let processes = fly["processes"].as_table().unwrap();
    let mut groups = BTreeMap::new();
    for (name, command) in processes {
        let args: Vec<&str> = command.as_str().unwrap().split_whitespace().collect();
        groups.insert(name.clone(), role_of(&assert_command(file, &args)));
    }
    assert_eq!(
        groups.get("api"),
        Some(&Some(Role::Api)),
        "{file}: process api"
    );
    assert_eq!(
        groups.get("host"),
        Some(&Some(Role::Host)),
        "{file}: process host"
    );

    let http = &fly["http_service"];
    assert_eq!(
        http["processes"].as_array().unwrap(),
        &[toml::Value::from("api")]
    );
    assert_eq!(
        http["internal_port"].as_integer(),
        Some(i64::from(defaults.server.api_port)),
        "{file}: internal_port is the API's port"
    );
    let checks = http["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no checks on api"));
    assert!(
        checks.iter().any(|c| c["path"].as_str() == Some("/ready")),
        "{file}: the API is checked on /ready"
    );
    // The host: its own check on its port, and the API finds it on the private network.
    let host_check = fly["checks"]
        .as_table()
        .and_then(|t| {
            t.values().find(|c| {
                c["processes"]
                    .as_array()
                    .is_some_and(|p| p.contains(&toml::Value::from("host")))
            })
        })
        .unwrap_or_else(|| panic!("{file}: no check on the host"));
    assert_eq!(
        host_check["port"].as_integer(),
        Some(i64::from(defaults.server.host_port))
    );
    let host_url = reqwest::Url::parse(&settings.bus.host_url).unwrap();
    assert_eq!(host_url.host_str(), Some("host.process.radio24.internal"));
    assert_eq!(host_url.port(), Some(defaults.server.host_port));
    assert_eq!(
        settings.server.bind, "::",
        "{file}: Fly's private network is IPv6"
    );
    assert_eq!(
        fly["app"].as_str(),
        Some("radio24"),
        "{file}: the .internal name names the app"
    );
}

// ---------------------------------------------------------------------------------------
// cloudbuild.yaml

/// One step's command line: `gcloud …` from args, or from a bash `-c` script.
fn step_words(step: &Yaml) -> Vec<String> {
    let args = strings(&step["args"]);
    match step["entrypoint"].as_str() {
        Some("bash") => {
            assert_eq!(args[0], "-c");
            // $(…) of the host's URL, then shell words (no spaces inside any value here).
            args[1]
                .replace(
                    "$(cat /workspace/host_url)",
                    "https://radio24-host-abc-an.a.run.app",
                )
                .split_whitespace()
                .map(|w| w.trim_matches('\'').to_owned())
                .collect()
        }
        Some(entry) => std::iter::once(entry.to_owned()).chain(args).collect(),
        None => args,
    }
}

/// Cloud Build's substitutions, with sample built-in values.
fn substitute(text: &str, subs: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (k, v) in subs {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    assert!(
        !out.contains("${"),
        "cloudbuild.yaml: an unknown substitution in {text}"
    );
    out
}

fn flag<'a>(words: &'a [String], name: &str) -> Option<&'a str> {
    words.iter().find_map(|w| {
        if w == name {
            Some("")
        } else {
            w.strip_prefix(name).and_then(|r| r.strip_prefix('='))
        }
    })
}

#[test]
fn cloudbuild_pushes_one_image_and_deploys_both_roles_and_a_migration_job() {
    let file = "cloudbuild.yaml";
    let build = yaml(file);
    let mut subs: BTreeMap<String, String> = build["substitutions"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for name in ["_REGION", "_INSTANCE"] {
        assert!(subs.contains_key(name), "{file}: substitution {name}");
    }
    subs.insert("PROJECT_ID".into(), "my-project".into());
    subs.insert("BUILD_ID".into(), "b-1".into());
    let steps: Vec<Vec<String>> = build["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| step_words(s).iter().map(|w| substitute(w, &subs)).collect())
        .collect();
    let find = |prefix: &[&str], name: &str| -> (usize, &Vec<String>) {
        steps
            .iter()
            .enumerate()
            .find(|(_, w)| {
                w.len() > prefix.len() && w[..prefix.len()] == *prefix && w[prefix.len()] == name
            })
            .unwrap_or_else(|| panic!("{file}: no step `{} {name}`", prefix.join(" ")))
    };
    // One image: built, pushed, and the one every service and the job run.
    let built = steps
        .iter()
        .find(|w| w[0] == "build")
        .and_then(|w| flag(w, "--tag"))
        .unwrap_or_else(|| panic!("{file}: no docker build --tag"))
        .to_owned();
    assert!(
        built.contains("-docker.pkg.dev/"),
        "{file}: Artifact Registry: {built}"
    );
    assert!(
        steps.iter().any(|w| w[0] == "push" && w[1] == built),
        "{file}: {built} is pushed"
    );

    let (job_at, job) = find(&["gcloud", "run", "jobs", "deploy"], "radio24-migrate");
    let (exec_at, exec) = find(&["gcloud", "run", "jobs", "execute"], "radio24-migrate");
    let (host_at, host) = find(&["gcloud", "run", "deploy"], "radio24-host");
    let (api_at, api) = find(&["gcloud", "run", "deploy"], "radio24-api");
    assert!(
        flag(exec, "--wait").is_some(),
        "{file}: the migration is waited for"
    );
    assert!(
        job_at < exec_at && exec_at < api_at,
        "{file}: migrate before the API deploys"
    );
    let defaults = defaults();

    let mut services = BTreeMap::new();
    for (name, words) in [
        ("radio24-migrate", job),
        ("radio24-host", host),
        ("radio24-api", api),
    ] {
        assert_eq!(
            flag(words, "--image"),
            Some(built.as_str()),
            "{file}: {name} runs the built image"
        );
        let args: Vec<&str> = flag(words, "--args").unwrap().split(',').collect();
        let command = assert_command(file, &args);
        let mut env = image_env();
        for pair in flag(words, "--set-env-vars")
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap();
            env.insert(k.to_owned(), v.to_owned());
        }
        for pair in flag(words, "--set-secrets")
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let (k, secret) = pair.split_once('=').unwrap();
            assert!(secret.contains(':'), "{file}: {k}={secret}: name:version");
            let sample = if k.ends_with("_URL") {
                "wss://livekit.example"
            } else {
                "sample-secret"
            };
            env.insert(k.to_owned(), sample.to_owned());
        }
        // Cloud Run sets PORT.
        env.insert("PORT".into(), "8080".into());
        let settings = load_env(&format!("{file} ({name})"), &env);
        services.insert(name, (command, settings));
    }
    let (command, settings) = &services["radio24-migrate"];
    assert!(matches!(command, Command::Migrate));
    let cloudsql = |settings: &Settings| match settings.database_target() {
        DatabaseTarget::Postgres(url) => url.expose_secret().to_owned(),
        DatabaseTarget::Sqlite(_) => panic!("{file}: no PostgreSQL"),
    };
    let connection = format!("my-project:{}:{}", subs["_REGION"], subs["_INSTANCE"]);
    let socket_host = format!("@%2Fcloudsql%2F{}:", connection.replace(':', "%3A"));
    assert!(
        cloudsql(settings).contains(&socket_host),
        "{file}: the job reaches Cloud SQL's socket"
    );
    assert_eq!(
        flag(job, "--set-cloudsql-instances"),
        Some(connection.as_str())
    );

    let (command, host_settings) = &services["radio24-host"];
    assert_eq!(role_of(command), Some(Role::Host));
    for needed in ["--no-cpu-throttling", "--no-allow-unauthenticated"] {
        assert!(
            flag(host, needed).is_some(),
            "{file}: the host needs {needed}"
        );
    }
    assert_eq!(
        flag(host, "--min-instances"),
        Some("1"),
        "{file}: min = 1 host"
    );
    assert_eq!(
        flag(host, "--max-instances"),
        Some("1"),
        "{file}: max = 1 host"
    );

    let (command, api_settings) = &services["radio24-api"];
    assert_eq!(role_of(command), Some(Role::Api));
    assert!(
        flag(api, "--allow-unauthenticated").is_some(),
        "{file}: the API is public"
    );
    assert_eq!(
        flag(api, "--add-cloudsql-instances"),
        Some(connection.as_str())
    );
    assert!(cloudsql(api_settings).contains(&socket_host));
    assert_eq!(api_settings.server.port, Some(defaults.server.api_port));
    // ID tokens on the bus: the same audience on both sides, which Cloud Run accepts.
    assert_eq!(api_settings.bus.auth, BusAuth::GoogleIdToken);
    assert_eq!(host_settings.bus.auth, BusAuth::GoogleIdToken);
    assert_eq!(api_settings.bus.audience(), host_settings.bus.audience());
    assert_eq!(
        flag(host, "--add-custom-audiences"),
        Some(host_settings.bus.audience())
    );
    let api_account = flag(api, "--service-account").unwrap();
    assert_eq!(
        host_settings.bus.google_service_account.as_deref(),
        Some(api_account),
        "{file}: the host accepts the API's service account"
    );
    let (_, invoker) = find(
        &["gcloud", "run", "services", "add-iam-policy-binding"],
        "radio24-host",
    );
    assert_eq!(
        flag(invoker, "--member"),
        Some(format!("serviceAccount:{api_account}").as_str())
    );
    assert_eq!(flag(invoker, "--role"), Some("roles/run.invoker"));
    assert!(
        api_at > host_at,
        "{file}: the API deploys after the host it calls"
    );
}

/// The files this module reads all exist (a rename would otherwise skip nothing silently).
#[test]
fn every_deployment_file_is_there() {
    for file in [
        "Dockerfile",
        ".dockerignore",
        "docker-compose.yml",
        "fly.toml",
        "cloudbuild.yaml",
        "docs/deploy.md",
    ] {
        assert!(Path::new(&repo().join(file)).is_file(), "{file} is missing");
    }
}
