//! `mptcp demo --quick` end to end, as the README's main job: every
//! service type and the kernel through the failing-Wi-Fi scenario, judged
//! from its JSON and its pictures. Needs root; without it the lab test
//! reports itself SKIPPED.

use std::path::Path;
use std::process::Command;

use multipath_lab::testing::lab_test;
use serde_json::Value;

const MPTCP: &str = env!("CARGO_BIN_EXE_mptcp");

fn run(name: &str, runs: &[Value]) -> Value {
    runs.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no run {name}")).clone()
}

#[test]
fn the_quick_demo_shows_each_service_type_beside_the_kernel() {
    let Some(_lab) = lab_test("the_quick_demo_shows_each_service_type_beside_the_kernel") else { return };
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = Command::new(MPTCP)
        .args(["demo", "--quick", "--json", "--out"])
        .arg(&out_dir)
        .output()
        .expect("mptcp demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mptcp demo failed: {stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let demo = &json["demo"];
    let runs = demo["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 5, "{demo}");
    for r in runs {
        eprintln!("{}", r["sentence"].as_str().unwrap_or("?"));
    }

    let none = run("none", runs);
    assert_eq!(none["result"], "broken", "TCP cannot leave a dead wifi: {none}");
    assert_eq!(none["broken_by"], "wifi down", "{none}");
    for name in ["handover", "interactive"] {
        let r = run(name, runs);
        assert_eq!(r["result"], "completed", "{r}");
        assert!(r["bytes_verified"].as_u64().unwrap() > 1_000_000, "{r}");
        assert!(r["phases"].as_array().unwrap().iter().all(|p| p["carried_on"] == true), "{r}");
    }
    let handover = run("handover", runs);
    let share = handover["healthy_share_off_first"].as_f64().unwrap();
    assert!(share <= 0.02, "handover used cell for {:.1}% while wifi was healthy", share * 100.0);
    let aggregate = run("aggregate", runs);
    let healthy: Vec<u64> =
        aggregate["phases"][0]["bytes_per_path"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect();
    assert!(healthy.iter().all(|b| *b > 200_000), "aggregate uses every path while healthy: {healthy:?}");
    for r in runs {
        let expected = match r["name"].as_str().unwrap() {
            "kernel" => Some(false),
            "none" => None,
            _ => Some(true),
        };
        if let Some(enforced) = expected {
            assert_eq!(r["enforced"], enforced, "{r}");
        }
    }

    // The pictures: one line per path in each timeline, one per path and
    // run in the comparison.
    let figures = &demo["figures"];
    let colors: Vec<String> =
        figures["series"].as_array().unwrap().iter().map(|s| s["color"].as_str().unwrap().to_owned()).collect();
    assert_eq!(colors.len(), 2);
    for t in figures["timelines"].as_array().unwrap() {
        assert_series(Path::new(t["file"].as_str().unwrap()), &colors, 1);
    }
    assert_series(Path::new(figures["comparison"].as_str().unwrap()), &colors, runs.len());
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// Parses `file` as XML and checks it holds `per_color` data lines (more
/// than two points) of each colour, and names each path in its key.
fn assert_series(file: &Path, colors: &[String], per_color: usize) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{} is not XML: {e}", file.display()));
    for color in colors {
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter(|n| n.attribute("stroke").is_some_and(|s| s.eq_ignore_ascii_case(color)))
            .filter(|n| n.attribute("points").is_some_and(|p| p.split_whitespace().count() > 2))
            .count();
        assert_eq!(lines, per_color, "{}: lines of {color}", file.display());
    }
    let texts: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
    for path in ["wifi", "cell"] {
        assert!(
            texts.iter().any(|t| t.contains(&format!("received on {path}"))),
            "{}: no key for {path}",
            file.display()
        );
    }
}
