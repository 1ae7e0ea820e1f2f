//! HTTP benchmarks on loopback, each beside its baseline in the same run:
//! - `bench get`: `mptcp get` against curl (under `mptcpize run`, so it uses
//!   MPTCP too) fetching the same file from one `mptcp serve`;
//! - `bench serve`: wrk (under `mptcpize run`) against `mptcp serve`'s check
//!   endpoint with keep-alive.
//!
//! Every contender is a process of its own, as a user would run it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// `mptcp serve` with HTTP and HTTPS on free loopback ports, a certificate
/// of our own; killed on drop.
struct Served {
    child: Child,
    http: SocketAddr,
    https: SocketAddr,
    cacert: PathBuf,
    dir: PathBuf,
}

impl Served {
    fn start(threads: usize) -> Result<Served> {
        let dir = std::env::temp_dir().join(format!("mptcp-bench-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (cert, key) = multipath_http::server::self_signed_pem(&["localhost".into(), "127.0.0.1".into()])?;
        let (cacert, keyfile) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cacert, cert)?;
        std::fs::write(&keyfile, key)?;
        let free = || -> Result<SocketAddr> { Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?) };
        let (http, https) = (free()?, free()?);
        let child = Command::new(std::env::current_exe()?)
            .args(["serve", "--http", &http.to_string(), "--https", &https.to_string()])
            .args(["--threads", &threads.to_string()])
            .arg("--cert")
            .arg(&cacert)
            .arg("--key")
            .arg(&keyfile)
            .stderr(Stdio::null())
            .spawn()
            .context("starting mptcp serve")?;
        let served = Served { child, http, https, cacert, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(https).is_err() || TcpStream::connect(http).is_err() {
            if Instant::now() > deadline {
                bail!("mptcp serve did not start listening within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(served)
    }

    fn url(&self, secure: bool, path: &str) -> String {
        if secure {
            format!("https://localhost:{}{path}", self.https.port())
        } else {
            format!("http://{}{path}", self.http)
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

/// How to run a baseline tool: under `mptcpize run` when that is
/// installed. Looked up once per benchmark.
struct Baseline {
    program: &'static str,
    mptcpize: bool,
}

impl Baseline {
    fn find(program: &'static str) -> Result<Baseline> {
        if !have(program) {
            bail!("{program} is not installed (apt-get install {program})");
        }
        let mptcpize = have("mptcpize");
        if !mptcpize {
            eprintln!("note: mptcpize is not installed, so {program} runs over plain TCP (apt-get install mptcpize)");
        }
        Ok(Baseline { program, mptcpize })
    }

    fn command(&self) -> Command {
        if self.mptcpize {
            let mut c = Command::new("mptcpize");
            c.args(["run", self.program]);
            c
        } else {
            Command::new(self.program)
        }
    }
}

#[derive(Serialize)]
struct GetRow {
    scheme: &'static str,
    curl_mbit_s: Vec<f64>,
    /// `mptcp get --no-verify`: the same work as curl.
    mptcp_get_mbit_s: Vec<f64>,
    /// `mptcp get` checking the SHA-256 of the body, its default.
    mptcp_get_verified_mbit_s: Vec<f64>,
    ratio_of_medians: f64,
    verified_ratio_of_medians: f64,
}

/// `mptcp get` against curl, HTTP and HTTPS, `rounds` alternated transfers
/// of `size` each.
pub fn get(size: &str, rounds: usize, json: bool) -> Result<()> {
    let bytes = multipath_http::content::parse_size(size)?;
    // One server thread: the server is the fixed source both contenders
    // share. With two on this 2-core machine, its idle worker contended
    // with the client and every contender's figure turned bimodal (about
    // 7 or 12 Gbit/s, by where the scheduler put the threads).
    let served = Served::start(1)?;
    let curl = Baseline::find("curl")?;
    let mut rows = Vec::new();
    for secure in [false, true] {
        let url = served.url(secure, &format!("/files/{size}"));
        // Warm up: the server hashes the file once, the page cache fills.
        mptcp_get(&url, &served.cacert, true)?;
        let (mut curl_runs, mut ours, mut verified) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            curl_runs.push(curl_get(&curl, &url, &served.cacert)?);
            ours.push(mptcp_get(&url, &served.cacert, false)?);
            verified.push(mptcp_get(&url, &served.cacert, true)?);
        }
        rows.push(GetRow {
            scheme: if secure { "https" } else { "http" },
            ratio_of_medians: super::stats::median(&ours) / super::stats::median(&curl_runs),
            verified_ratio_of_medians: super::stats::median(&verified) / super::stats::median(&curl_runs),
            curl_mbit_s: curl_runs,
            mptcp_get_mbit_s: ours,
            mptcp_get_verified_mbit_s: verified,
        });
    }
    if json {
        let out = serde_json::json!({ "bytes": bytes, "curl_over_mptcp": curl.mptcpize, "rows": rows });
        println!("{out}");
        return Ok(());
    }
    println!(
        "GET of {size} from mptcp serve on loopback, {rounds} alternated rounds (curl {})",
        if curl.mptcpize { "under mptcpize run: MPTCP" } else { "over TCP" }
    );
    println!("{:<6} {:>18} {:>26} {:>30}", "", "curl (median)", "mptcp get --no-verify", "mptcp get (SHA-256 checked)");
    for r in &rows {
        println!(
            "{:<6} {:>12.0} Mbit/s {:>12.0} Mbit/s ({:.2}x) {:>16.0} Mbit/s ({:.2}x)",
            r.scheme,
            super::stats::median(&r.curl_mbit_s),
            super::stats::median(&r.mptcp_get_mbit_s),
            r.ratio_of_medians,
            super::stats::median(&r.mptcp_get_verified_mbit_s),
            r.verified_ratio_of_medians,
        );
    }
    Ok(())
}

fn curl_get(curl: &Baseline, url: &str, cacert: &Path) -> Result<f64> {
    let out = curl
        .command()
        .args(["-s", "-f", "-o", "/dev/null", "-w", "%{speed_download}", "--cacert"])
        .arg(cacert)
        .arg(url)
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!("curl {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let bytes_per_s: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().context("curl's speed")?;
    Ok(bytes_per_s * 8.0 / 1e6)
}

fn mptcp_get(url: &str, cacert: &Path, verify: bool) -> Result<f64> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["get", "-s", "--json"]);
    if !verify {
        cmd.arg("--no-verify");
    }
    let out = cmd.arg("--cacert").arg(cacert).arg(url).output().context("running mptcp get")?;
    if !out.status.success() {
        bail!("mptcp get {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("mptcp get's JSON")?;
    if verify && v["verified"] != serde_json::json!(true) {
        bail!(
            "mptcp get {url}: content not verified (mptcp serve sends a hash only for files up to 256 MiB and the listed \
             ones, such as 1000M): {v}"
        );
    }
    v["throughput_mbit_s"].as_f64().context("throughput in mptcp get's JSON")
}

/// wrk's summary of one run.
#[derive(Serialize)]
struct Load {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

/// wrk (2 threads, `connections`, curl's User-Agent, keep-alive) against
/// the check endpoint for `seconds`.
pub fn serve(seconds: u64, connections: usize, threads: usize, json: bool) -> Result<()> {
    let served = Served::start(threads)?;
    let wrk = Baseline::find("wrk")?;
    let wrk_mptcp = wrk.mptcpize;
    let url = served.url(false, "/");
    let out = wrk
        .command()
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"])
        .args(["-H", "User-Agent: curl/8.5.0"])
        .arg(&url)
        .output()
        .context("running wrk")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let load = parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))?;
    // The same socket truth must hold under load: one check afterwards.
    let check = Command::new(std::env::current_exe()?).args(["check", "--json", &url]).output()?;
    let agreed = serde_json::from_slice::<serde_json::Value>(&check.stdout).is_ok_and(|v| v["agree"] == true);
    if json {
        println!(
            "{}",
            serde_json::json!({ "wrk_over_mptcp": wrk_mptcp, "connections": connections, "seconds": seconds, "server_threads": threads, "load": load, "check_agrees_after": agreed })
        );
        return Ok(());
    }
    println!(
        "wrk -t2 -c{connections} -d{seconds}s (curl User-Agent, keep-alive, {}) against mptcp serve --threads {threads}:",
        if wrk_mptcp { "MPTCP via mptcpize" } else { "TCP" }
    );
    println!(
        "  {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} non-2xx; mptcp check afterwards agrees: {agreed}",
        load.requests_per_s, load.p50_ms, load.p99_ms, load.non_2xx
    );
    Ok(())
}

fn parse_wrk(text: &str) -> Result<Load> {
    let ms = |s: &str| -> Option<f64> {
        let s = s.trim();
        if let Some(v) = s.strip_suffix("us") {
            v.parse::<f64>().ok().map(|v| v / 1000.0)
        } else if let Some(v) = s.strip_suffix("ms") {
            v.parse().ok()
        } else {
            s.strip_suffix('s').and_then(|v| v.parse::<f64>().ok()).map(|v| v * 1000.0)
        }
    };
    let mut load = Load { requests_per_s: f64::NAN, p50_ms: f64::NAN, p99_ms: f64::NAN, non_2xx: 0 };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => load.requests_per_s = v.parse()?,
            ["50%", v] => load.p50_ms = ms(v).context("p50")?,
            ["99%", v] => load.p99_ms = ms(v).context("p99")?,
            ["Non-2xx", "or", "3xx", "responses:", n] => load.non_2xx = n.parse()?,
            _ => {}
        }
    }
    if load.requests_per_s.is_nan() || load.p99_ms.is_nan() {
        bail!("no Requests/sec or 99% line");
    }
    Ok(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 10s test @ http://127.0.0.1:8080/\n  2 threads and 32 connections\n  Latency Distribution\n     50%  612.00us\n     75%    1.02ms\n     90%    2.10ms\n     99%    4.37ms\n  212345 requests in 10.00s, 30.1MB read\nRequests/sec:  21234.50\nTransfer/sec:      3.01MB\n";
        let l = parse_wrk(text).unwrap();
        assert_eq!((l.requests_per_s, l.p50_ms, l.p99_ms, l.non_2xx), (21234.5, 0.612, 4.37, 0));
        assert!(parse_wrk("garbage").is_err());
    }
}
