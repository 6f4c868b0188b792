//! A benchmark's result: printed as a Markdown table and appended to `docs/benchmarks.md`
//! under "Results log", with the command that produced it, the machine and the date, so
//! every figure in the file can be traced to a run. `--no-record` prints only.

use std::fmt::Write as _;
use std::io::Write as _;

/// One table of figures, with the notes that say how to read it.
pub struct Report {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Report {
    /// A table titled `title` with these column headings.
    pub fn new(title: &str, header: &[&str]) -> Self {
        Self {
            title: title.to_owned(),
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a row (as many cells as the header has).
    pub fn row<S: ToString>(&mut self, cells: &[S]) {
        self.rows.push(cells.iter().map(ToString::to_string).collect());
    }

    /// Adds a line of text under the table (a target met or missed, a caveat).
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// The table and its notes in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.header));
        out.push_str(&line(&vec!["---".to_owned(); self.header.len()]));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        out
    }

    /// Prints the table, and appends it with the command, machine and date to
    /// `docs/benchmarks.md` unless `--no-record` was given.
    pub fn finish(self) {
        let table = self.markdown();
        println!("\n## {}\n\n{table}", self.title);
        if std::env::args().any(|a| a == "--no-record") {
            return;
        }
        let entry = format!(
            "\n### {} ({})\n\n```sh\n{}\n```\n\n{}\n\n{table}",
            self.title,
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            command_line(),
            machine(),
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md");
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                let has_log = std::fs::read_to_string(&path)
                    .map(|s| s.contains("\n## Results log\n"))
                    .unwrap_or(false);
                if !has_log {
                    f.write_all(RESULTS_LOG_HEADING.as_bytes())?;
                }
                f.write_all(entry.as_bytes())
            });
        match appended {
            Ok(()) => println!("(appended to {})", path.display()),
            Err(e) => eprintln!("could not append to {}: {e}", path.display()),
        }
    }
}

const RESULTS_LOG_HEADING: &str = "\n## Results log\n\nEvery benchmark run appends its table \
here (`--no-record` to skip), with the command, the machine and the date. The sections above \
discuss the figures; this log is the raw record.\n";

/// The command as it would be typed: `cargo bench --bench NAME -- ARGS`.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| stem.rsplit_once('-').map_or(stem.clone(), |(n, _)| n.to_owned()))
        .unwrap_or_else(|| "?".to_owned());
    if args.is_empty() {
        format!("cargo bench --bench {name}")
    } else {
        format!("cargo bench --bench {name} -- {}", args.join(" "))
    }
}

/// CPU model, cores, memory, load average and commit: what the figures were measured on.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    format!(
        "Machine: {model}, {cores} cores, {mem_gib:.0} GiB; load average {load} at the end; \
         commit {commit}."
    )
}

/// Raises this process's open-file limit to its hard limit (10 000 sockets need more than
/// the usual soft limit of 1 024), and returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            eprintln!("could not raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
        }
    }
}
