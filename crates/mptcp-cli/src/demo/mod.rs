//! `mptcp demo`: the same download through a failing Wi-Fi under each
//! service type, enforced by `multipath`'s path manager, and under the
//! kernel's own path manager, each in a fresh lab; then a table, a sentence
//! per run, and pictures.
//!
//! - `scenario`: the event script (TOML).
//! - `record`: one run: lab, `mptcp serve`, path manager, measured download.
//! - `report`: what a run means (stalls, bytes per path, switches), as a
//!   table, sentences and JSON.
//! - `plot`: the SVG pictures.
//! - `live`: what is printed while it runs.

mod live;
mod plot;
mod record;
mod report;
mod scenario;

pub(crate) use record::ServeProcess;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use multipath::ServiceType;

use crate::bench::lab::Family;
use record::{Contender, Recording};
use report::Outcome;
use scenario::Scenario;

#[derive(Args, Clone)]
pub struct DemoArgs {
    /// Run one service type (and the kernel beside it) instead of all four.
    /// One of none, handover, interactive, aggregate.
    #[arg(long, value_name = "TYPE")]
    service: Option<ServiceType>,
    /// The short scenario (6.5 s a run instead of 10), for CI.
    #[arg(long, conflicts_with = "scenario")]
    quick: bool,
    /// A TOML event script instead of the built-in one (see the README).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Paths as `NAME:RATE:RTT[:LOSS][:v4|v6|dual]`, first preferred
    /// [default: wifi:20mbit:20ms cell:10mbit:60ms].
    #[arg(long = "path", value_name = "SPEC")]
    paths: Vec<String>,
    /// The family of the connection (the lab is dual stack).
    #[arg(long, value_enum, default_value = "v4")]
    family: Family,
    /// Where the pictures go (made if missing).
    #[arg(long, value_name = "DIR", default_value = "mptcp-demo")]
    out: PathBuf,
    /// Print the results as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let config = crate::lab::config_from(&args.paths)?;
    let names: Vec<&str> = config.paths.iter().map(|p| p.name.as_str()).collect();
    if names.len() < 2 {
        bail!("the demo needs at least two paths");
    }
    let scenario = match (&args.scenario, args.quick) {
        (Some(file), _) => Scenario::from_file(file, &names)?,
        (None, true) => Scenario::quick(),
        (None, false) => Scenario::standard(),
    };
    if let Some(missing) = scenario.paths().into_iter().find(|p| !names.contains(p)) {
        bail!("the scenario uses path {missing:?}, which the lab lacks (it has {})", names.join(", "));
    }
    // Bad input is reported before anything needs root.
    if !multipath_lab::is_root() {
        bail!("mptcp demo builds network namespaces and needs root: sudo mptcp demo");
    }
    let contenders: Vec<Contender> = match args.service {
        Some(s) => vec![Contender::Service(s), Contender::Kernel],
        None => ServiceType::ALL.iter().map(|s| Contender::Service(*s)).chain([Contender::Kernel]).collect(),
    };
    let stop = interrupt_flag()?;
    let mut live = live::Live::new();
    let (mut recordings, mut outcomes) = (Vec::new(), Vec::new());
    for (i, c) in contenders.iter().enumerate() {
        live.begin(i + 1, contenders.len(), &c.name(), c.describe());
        let rec = record::record(&config, *c, &scenario, args.family, &stop, &mut live)?;
        let outcome = Outcome::of(&rec);
        live.end(&format!(
            "{}{}",
            outcome.result,
            outcome.broken_by.as_ref().map_or(String::new(), |b| format!(": {b}"))
        ));
        recordings.push(rec);
        outcomes.push(outcome);
    }
    let figures = write_figures(&args.out, &recordings, &outcomes)?;
    let kernel = outcomes.iter().find(|o| o.name == Contender::Kernel.name());
    if args.json {
        let runs: Vec<_> = outcomes
            .iter()
            .map(|o| {
                let mut v = serde_json::to_value(o).expect("outcome serialises");
                v["sentence"] = o.sentence(kernel).into();
                v
            })
            .collect();
        let json = serde_json::json!({
            "demo": {
                "scenario": {
                    "seconds": scenario.duration.as_secs_f64(),
                    "events": scenario.events.iter().map(|e| serde_json::json!({"at_s": e.at.as_secs_f64(), "event": e.to_string()})).collect::<Vec<_>>(),
                },
                "family": format!("{:?}", args.family).to_lowercase(),
                "runs": runs,
                "figures": figures,
            }
        });
        println!("{json}");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{}", report::table(&outcomes))?;
    for o in &outcomes {
        writeln!(out, "{}", o.sentence(kernel))?;
    }
    writeln!(out, "\npictures:")?;
    writeln!(out, "  {}  every run, one above the other", figures["comparison"].as_str().unwrap_or("?"))?;
    for t in figures["timelines"].as_array().into_iter().flatten() {
        writeln!(out, "  {}", t["file"].as_str().unwrap_or("?"))?;
    }
    Ok(())
}

/// A flag that turns true at SIGINT, SIGTERM or SIGHUP, so a run stops
/// and its lab is torn down.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let shutdown = crate::shutdown::Shutdown::listen()?;
    let set = flag.clone();
    std::thread::spawn(move || {
        if shutdown.wait_while(|| true) {
            set.store(true, Ordering::Relaxed);
        }
    });
    Ok(flag)
}

/// Writes the timelines and the comparison into `dir`; returns where they
/// are, with each path's colour, as JSON.
fn write_figures(dir: &Path, recs: &[Recording], outcomes: &[Outcome]) -> Result<serde_json::Value> {
    make_dir(dir)?;
    let mut timelines = Vec::new();
    for (rec, o) in recs.iter().zip(outcomes) {
        let file = dir.join(format!("timeline-{}.svg", o.name));
        write_new(&file, &plot::timeline(rec, o)?)?;
        timelines.push(serde_json::json!({"run": o.name, "file": file}));
    }
    let comparison = dir.join("comparison.svg");
    write_new(&comparison, &plot::comparison(recs, outcomes)?)?;
    let series: Vec<_> = recs
        .first()
        .map(|r| &r.paths[..])
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| serde_json::json!({"path": p, "color": plot::color_hex(i)}))
        .collect();
    Ok(serde_json::json!({"comparison": comparison, "timelines": timelines, "series": series}))
}

/// Makes `dir` unless it exists; refuses a symlink in its place.
fn make_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("{} exists and is not a directory", dir.display()),
        Err(_) => std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display())),
    }
}

/// Writes `file` through a new file beside it (created exclusively), then
/// renames it into place: a symlink planted at `file` is replaced, never
/// followed.
fn write_new(file: &Path, text: &str) -> Result<()> {
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("renaming {} into place", tmp.display()))
}
