//! `mptcp run` with programs we did not write (curl, python3), against
//! `mptcp serve` in a lab, the daemon (`mptcp pmd`) in the client
//! namespace, stock sysctls. Needs root; without it each test reports
//! itself SKIPPED.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{within, KillOnDrop, Pmd, Scratch, Serve, MPTCP};
use multipath_http::content;
use multipath_lab::testing::{lab_test, reply_spread};
use multipath_lab::traffic::{longest_stall, share_until, RxRecorder};
use multipath_lab::{Lab, LabConfig, LinkShape};

/// The file each download fetches, and its size.
const FILE: &str = "8M";
const SIZE: u64 = 8_000_000;

/// Whether `file` holds exactly the server's test file of `SIZE` bytes.
fn verify(file: &Path) -> Result<(), String> {
    let got = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if got.len() as u64 != SIZE {
        return Err(format!("{} bytes, expected {SIZE}", got.len()));
    }
    let mut expected = vec![0u8; got.len()];
    content::fill(0, &mut expected);
    match got.iter().zip(&expected).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(at) => Err(format!("byte {at} differs")),
    }
}

/// What one download through a wifi failure showed.
#[derive(Debug)]
struct Outcome {
    /// Longest stall from the failure on.
    stall: Duration,
    /// Share of the bytes on cell while wifi was healthy.
    cell_before: f64,
    output: Output,
}

/// Runs `downloader` (writing to `file`) in the client namespace of a
/// fresh lab with the daemon running; once 2 MB have arrived, wifi goes
/// down for good. The download must complete.
fn through_wifi_failure(name: &str, file: &Path, downloader: impl Fn(&Lab, &Path) -> Command) -> Outcome {
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let _pmd = Pmd::start(&lab);
    let _serve = Serve::start(&lab);
    let recorder = RxRecorder::start(&lab, Duration::from_millis(10)).unwrap();
    let child = downloader(&lab, file).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    within(&format!("{name}: 2 MB downloaded"), Duration::from_secs(20), || recorder.total() >= 2_000_000);
    let failed_at = recorder.elapsed();
    lab.set_link("wifi", false).unwrap();
    let output = child.wait_with_output().unwrap();
    let samples = recorder.stop();
    assert!(output.status.success(), "{name} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    if let Err(e) = verify(file) {
        panic!("{name}: the download is wrong: {e}");
    }
    let stall = longest_stall(&samples, failed_at, 3000);
    let cell_before = share_until(&samples, 1, failed_at);
    eprintln!("{name}: stall {} ms after wifi failed; {:.2}% on cell before", stall.as_millis(), cell_before * 100.0);
    Outcome { stall, cell_before, output }
}

/// `mptcp run --service handover` in the lab's client namespace.
fn run_handover(lab: &Lab) -> Command {
    let mut c = lab.client().command(MPTCP);
    c.args(["run", "--service", "handover", "--"]);
    c
}

#[test]
fn curl_and_python_under_handover_survive_wifi_failing_as_the_library_does() {
    let Some(_one_at_a_time) = lab_test("curl_and_python_under_handover_survive_wifi_failing_as_the_library_does")
    else {
        return;
    };
    let scratch = Scratch::new("handover");
    // The library's own download: receive autotuning, as curl and python have.
    let library = through_wifi_failure("mptcp get (library)", &scratch.0.join("library"), |lab, file| {
        let mut c = lab.client().command(MPTCP);
        c.args(["get", "--service", "handover", "--recv-buffer", "kernel", "-o"]).arg(file);
        c.arg(format!("http://{}/files/{FILE}", Serve::v4(lab)));
        c
    });
    let curl = through_wifi_failure("curl under mptcp run", &scratch.0.join("curl"), |lab, file| {
        let mut c = run_handover(lab);
        c.args(["curl", "-sS", "-o"]).arg(file).arg(format!("http://{}/files/{FILE}", Serve::v4(lab)));
        c
    });
    // Python over IPv6.
    let python =
        through_wifi_failure("python3 urllib under mptcp run (IPv6)", &scratch.0.join("python"), |lab, file| {
            let mut c = run_handover(lab);
            c.args([
                "python3",
                "-c",
                "import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())",
            ]);
            c.arg(format!("http://{}/files/{FILE}", Serve::v6(lab))).arg(file);
            c
        });
    for (name, o) in [("curl", &curl), ("python", &python)] {
        assert!(o.cell_before <= 0.02, "{name}: {:.1}% on cell while wifi was healthy", o.cell_before * 100.0);
        // One run each, sampled every 10 ms: 10% of the library's stall,
        // plus 30 ms for the sampling of both.
        let bound = library.stall.mul_f64(1.1) + Duration::from_millis(30);
        assert!(o.stall <= bound, "{name} stalled {:?}, the library {:?}", o.stall, library.stall);
        assert!(
            !String::from_utf8_lossy(&o.output.stderr).contains("multipath:"),
            "{name}: the preload library complained: {}",
            String::from_utf8_lossy(&o.output.stderr)
        );
    }
}

/// Python that sets `TCP_MD5SIG` (for a peer it never talks to) on two
/// sockets before connecting, fetches `/` on one, and prints each socket's
/// protocol, then a third socket's, which sets nothing.
const MD5SIG_CLIENT: &str = r#"
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
peer = struct.pack("=HH4s", socket.AF_INET, 0, socket.inet_aton("10.9.9.9")).ljust(128, b"\0")
md5 = peer + struct.pack("=BBHi", 0, 0, 6, 0) + b"secret".ljust(80, b"\0")
protos = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, 14, md5)  # TCP_MD5SIG
    protos.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL))
s.connect((host, port))
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
reply = b""
while chunk := s.recv(65536):
    reply += chunk
plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
protos.append(plain.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL))
print(reply.split(b"\r\n")[0].decode(), *protos)
"#;

#[test]
fn an_option_mptcp_refuses_makes_that_socket_tcp_and_says_so_once() {
    let Some(_one_at_a_time) = lab_test("an_option_mptcp_refuses_makes_that_socket_tcp_and_says_so_once") else {
        return;
    };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let _pmd = Pmd::start(&lab);
    let _serve = Serve::start(&lab);
    let server = Serve::v4(&lab);
    let out = run_handover(&lab)
        .args(["python3", "-c", MD5SIG_CLIENT, &server.ip().to_string(), &server.port().to_string()])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    // Both MD5 sockets TCP (6), the plain one MPTCP (262); the request worked.
    assert_eq!(stdout.trim(), "HTTP/1.1 200 OK 6 6 262", "{stderr}");
    assert_eq!(
        stderr.matches("TCP_MD5SIG is refused on MPTCP sockets; such a socket falls back to plain TCP").count(),
        1,
        "said once: {stderr}"
    );
}

/// Python making a request on one kept-alive connection every 100 ms for
/// up to 60 s.
const KEEPALIVE_CLIENT: &str = r#"
import http.client, sys, time
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]))
end = time.time() + 60
while time.time() < end:
    c.request("GET", "/")
    c.getresponse().read()
    time.sleep(0.1)
"#;

/// The daemon's listing (`mptcp ls --json`), as root or as `as_user` sees it.
fn listing(lab: &Lab, as_user: Option<u32>) -> Vec<serde_json::Value> {
    let mut c = match as_user {
        Some(uid) => {
            let mut c = lab.client().command("setpriv");
            c.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), MPTCP.into()]);
            c
        }
        None => lab.client().command(MPTCP),
    };
    let out = c.args(["ls", "--json"]).output().unwrap();
    assert!(out.status.success(), "mptcp ls: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn interactive_follows_a_delay_swap_and_aggregate_needs_an_entitlement() {
    let Some(_one_at_a_time) = lab_test("interactive_follows_a_delay_swap_and_aggregate_needs_an_entitlement") else {
        return;
    };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let _pmd = Pmd::start(&lab);
    let _serve = Serve::start(&lab);
    let server = Serve::v6(&lab);
    let mut client = lab.client().command(MPTCP);
    client.args(["run", "--service", "interactive", "--", "python3", "-c", KEEPALIVE_CLIENT]);
    let client = client.args([&server.ip().to_string(), &server.port().to_string()]).spawn().unwrap();
    let client = KillOnDrop(client);
    let ours = |lab: &Lab| {
        listing(lab, None)
            .into_iter()
            .find(|c| c["source"] == "run" && c["program"].as_str().is_some_and(|p| p.contains("python")))
    };
    let active = |lab: &Lab| ours(lab).and_then(|c| c["active"].as_str().map(str::to_owned));
    within("the python connection listed, on wifi", Duration::from_secs(10), || {
        active(&lab).as_deref() == Some("wifi")
    });
    let listed = ours(&lab).unwrap();
    assert_eq!(listed["service"], "interactive");
    assert_eq!(listed["uid"], 0);
    assert_eq!(listed["pid"], client.0.id(), "mptcp run execs the program: same pid");
    assert!(listed["remote"].as_str().unwrap().starts_with('['), "IPv6: {listed}");
    // Another user sees none of root's connections.
    assert!(listing(&lab, Some(65534)).is_empty());

    // Wifi turns slow, cell fast.
    let swap = Instant::now();
    lab.set_shape(
        "wifi",
        LinkShape::new(20.0, Duration::from_millis(100)),
        LinkShape::new(20.0, Duration::from_millis(100)),
    )
    .unwrap();
    lab.set_shape(
        "cell",
        LinkShape::new(10.0, Duration::from_millis(10)),
        LinkShape::new(10.0, Duration::from_millis(10)),
    )
    .unwrap();
    within("interactive moved to cell", Duration::from_secs(15), || active(&lab).as_deref() == Some("cell"));
    eprintln!("interactive under mptcp run moved to cell {} ms after the delay swap", swap.elapsed().as_millis());
    drop(client);

    // Aggregate for a user without an entitlement: refused before the
    // program runs, with the reason.
    let marker = std::env::temp_dir().join(format!("mptcp-run-lab-ran-{}", std::process::id()));
    let out = lab
        .client()
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            MPTCP,
            "run",
            "--service",
            "aggregate",
            "--",
            "touch",
        ])
        .arg(&marker)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("aggregate is not granted to /") && stderr.contains("uid 65534"), "{stderr}");
    assert!(!marker.exists(), "the program did not run");
}

/// The executable a command really runs (`/proc/self/exe` of the process,
/// past shims such as pyenv's).
fn real_exe(program: &str, print_exe: &[&str]) -> String {
    let out = Command::new(program).args(print_exe).output().unwrap();
    assert!(out.status.success(), "{program}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Python holding an MPTCP connection of its own making (as a Go program
/// does by default), reading a large file slowly.
const SLOW_MPTCP_READER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, 262)
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /files/50M HTTP/1.1\r\nHost: x\r\n\r\n")
while s.recv(16384):
    time.sleep(0.05)
"#;

#[test]
fn rules_give_programs_started_plainly_their_service_type() {
    let Some(_one_at_a_time) = lab_test("rules_give_programs_started_plainly_their_service_type") else { return };
    let python = real_exe("python3", &["-c", "import os; print(os.readlink('/proc/self/exe'))"]);
    let curl = std::fs::canonicalize(real_exe("sh", &["-c", "command -v curl"])).unwrap();
    let scratch = Scratch::new("rules");
    let config = scratch.0.join("pmd.toml");
    std::fs::write(
        &config,
        format!(
            "[[rule]]\nname = \"py\"\nexe = \"{python}\"\nservice = \"interactive\"\n\n\
             [[rule]]\nname = \"fetchers\"\nexe = \"{}\"\nport = \"8000-8099\"\nservice = \"handover\"\n",
            curl.display()
        ),
    )
    .unwrap();
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let _pmd = Pmd::start_with(&lab, &["--config", config.to_str().unwrap()]);
    let _serve = Serve::start(&lab);
    let v6 = Serve::v6(&lab);
    let _python = KillOnDrop(
        lab.client()
            .command("python3")
            .args(["-c", SLOW_MPTCP_READER, &v6.ip().to_string(), &v6.port().to_string()])
            .spawn()
            .unwrap(),
    );
    // curl's sockets made MPTCP without registering, as `mptcpize run` does.
    let _curl = KillOnDrop(
        lab.client()
            .command(MPTCP)
            .args(["run", "--no-daemon", "--service", "handover", "--", "curl", "-s", "--limit-rate", "100k", "-o"])
            .arg("/dev/null")
            .arg(format!("http://{}/files/50M", Serve::v4(&lab)))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let by_program = |listed: &[serde_json::Value], exe: &str| -> Option<serde_json::Value> {
        listed.iter().find(|c| c["program"] == exe).cloned()
    };
    within("both connections listed", Duration::from_secs(10), || {
        let listed = listing(&lab, None);
        by_program(&listed, &python).is_some() && by_program(&listed, curl.to_str().unwrap()).is_some()
    });
    let listed = listing(&lab, None);
    let (py, cu) = (by_program(&listed, &python).unwrap(), by_program(&listed, curl.to_str().unwrap()).unwrap());
    assert_eq!((&py["service"], &py["source"]), (&"interactive".into(), &"rule:py".into()), "{py}");
    assert_eq!((&cu["service"], &cu["source"]), (&"handover".into(), &"rule:fetchers".into()), "{cu}");
    // `mptcp monitor --json` says the same when the listing changes.
    let mut monitor = KillOnDrop(
        lab.client()
            .command(MPTCP)
            .args(["monitor", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = monitor.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if let Some(c) =
                serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v.get("connections").cloned())
            {
                let _ = tx.send(c);
            }
        }
    });
    let from_monitor = rx.recv_timeout(Duration::from_secs(10)).expect("monitor lists the daemon's connections");
    assert!(
        from_monitor.as_array().unwrap().iter().any(|c| c["program"] == python.as_str() && c["source"] == "rule:py"),
        "{from_monitor}"
    );
    drop(monitor);
    // Enforced, not only labelled: handover keeps cell as a backup subflow.
    within("curl's connection with a backup subflow on cell", Duration::from_secs(5), || {
        by_program(&listing(&lab, None), curl.to_str().unwrap()).is_some_and(|c| {
            c["subflows"].as_array().unwrap().iter().any(|s| s["path"] == "cell" && s["backup"] == true)
        })
    });
}

/// Runs an example of the C API in the client namespace until it says
/// "ready"; checks what it printed and what `mptcp ls` says of its
/// connection; then lets it finish.
fn example_sees_handover(lab: &Lab, name: &str, mut command: Command) {
    use std::io::{BufRead, BufReader};
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut said = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        if line == "ready" {
            break;
        }
        said.push(line);
    }
    let said = said.join("\n");
    assert!(said.contains("status multipath=1") && said.contains("subflows=2"), "{name}: {said}");
    assert!(said.contains("subflow wifi") && said.contains("subflow cell"), "{name}: {said}");
    let listed = listing(lab, None);
    let ours = listed.iter().find(|c| c["pid"] == child.id()).unwrap_or_else(|| panic!("{name}: {listed:?}"));
    assert_eq!((&ours["service"], &ours["source"]), (&"handover".into(), &"registered".into()), "{name}");
    drop(child.stdin.take()); // EOF: the example closes and exits
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_c_and_python_examples_of_the_c_api_register_and_get_handover() {
    let Some(_one_at_a_time) = lab_test("the_c_and_python_examples_of_the_c_api_register_and_get_handover") else {
        return;
    };
    let scratch = Scratch::new("c-api");
    // The library as an installation names it (its soname), and for -l.
    let built = Path::new(MPTCP).parent().unwrap().join("deps/libmultipath_c.so");
    assert!(built.is_file(), "{} is built with mptcp", built.display());
    for name in ["libmultipath_c.so.1", "libmultipath_c.so"] {
        std::os::unix::fs::symlink(&built, scratch.0.join(name)).unwrap();
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../multipath-c");
    let binary = scratch.0.join("handover");
    let cc = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("examples/handover.c"))
        .arg("-L")
        .arg(&scratch.0)
        .arg(format!("-Wl,-rpath,{}", scratch.0.display()))
        .args(["-lmultipath_c", "-o"])
        .arg(&binary)
        .output()
        .unwrap();
    assert!(cc.status.success(), "cc: {}", String::from_utf8_lossy(&cc.stderr));

    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let _pmd = Pmd::start(&lab);
    let _serve = Serve::start(&lab);
    let (v4, v6) = (Serve::v4(&lab), Serve::v6(&lab));
    let mut c = lab.client().command(binary.to_str().unwrap());
    c.args([v4.ip().to_string(), v4.port().to_string()]);
    example_sees_handover(&lab, "C example", c);
    let mut py = lab.client().command("python3");
    py.arg(crate_dir.join("examples/handover.py")).arg(scratch.0.join("libmultipath_c.so.1"));
    py.args([v6.ip().to_string(), v6.port().to_string()]);
    example_sees_handover(&lab, "Python example (IPv6)", py);
}

/// Starts, without the preload library, a child that reads slowly over an
/// MPTCP socket of its own: as a Go program or a static binary would.
const PARENT_OF_A_PROGRAM_PAST_THE_PRELOAD: &str = r#"
import os, subprocess, sys
env = dict(os.environ)
env.pop("LD_PRELOAD")
subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]], env=env)
"#;

#[test]
fn a_child_past_the_preload_library_still_gets_the_run_service_type() {
    let Some(_one_at_a_time) = lab_test("a_child_past_the_preload_library_still_gets_the_run_service_type") else {
        return;
    };
    let lab = Lab::up(&LabConfig::wifi_cell()).unwrap();
    let _pmd = Pmd::start(&lab);
    let _serve = Serve::start(&lab);
    let v6 = Serve::v6(&lab);
    let mut run = lab.client().command(MPTCP);
    run.args(["run", "--service", "interactive", "--", "python3", "-c", PARENT_OF_A_PROGRAM_PAST_THE_PRELOAD]);
    run.args([SLOW_MPTCP_READER, &v6.ip().to_string(), &v6.port().to_string()]);
    let mut parent = run.spawn().unwrap();
    let parent_pid = parent.id();
    let found = Instant::now();
    let mut listed = None;
    while listed.is_none() && found.elapsed() < Duration::from_secs(10) {
        listed =
            listing(&lab, None).into_iter().find(|c| c["pid"].as_u64().is_some_and(|p| p != u64::from(parent_pid)));
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = parent.kill();
    let _ = parent.wait();
    let listed = listed.expect("the child's connection is listed");
    if let Some(child) = listed["pid"].as_i64() {
        // SAFETY: kill(2) of the orphaned child the test started.
        unsafe { libc::kill(child as i32, libc::SIGKILL) };
    }
    assert_eq!((&listed["service"], &listed["source"]), (&"interactive".into(), &"run".into()), "{listed}");
}

/// A dual-stack server answering each of `sys.argv[2]` connections with
/// 100 bytes, 100 more, and then `close()` or `shutdown(SHUT_WR)`
/// (`sys.argv[1]`); says "listening" first.
const TWO_WRITES_SERVER: &str = r#"
import socket, sys
ending, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 5100)); s.listen(8)
print("listening", s.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL), flush=True)
for _ in range(count):
    c, _ = s.accept()
    c.recv(1)
    c.send(b"a" * 100); c.send(b"b" * 100)
    if ending == "shutdown":
        c.shutdown(socket.SHUT_WR); c.recv(1)
    c.close()
"#;

/// Under `mptcp run`, an unmodified server's short last write leaves as it
/// closes or shuts down writing, as the library's does, not a round trip
/// later (the kernel's MPTCP keeps Nagle on at close; see the library's
/// lab test `a_short_last_write_leaves_at_close_not_a_round_trip_later`).
/// Python, IPv4 and IPv6, a 100 ms path.
#[test]
fn an_unmodified_server_sends_its_last_short_write_at_close() {
    use std::io::BufRead;
    let Some(_one_at_a_time) = lab_test("an_unmodified_server_sends_its_last_short_write_at_close") else {
        return;
    };
    let rtt = Duration::from_millis(100);
    let path = multipath_lab::PathConfig::new("wifi").rate_mbit(20.0).rtt(rtt);
    let lab = Lab::up(&LabConfig::new().path(path)).unwrap();
    let params = multipath::Parameters::tcp().multipath_service_type(multipath::ServiceType::Handover);
    let servers = [lab.server_addr().into(), std::net::IpAddr::from(lab.server_addr6())];
    for ending in ["close", "shutdown"] {
        let mut run = lab.server().command(MPTCP);
        run.args(["run", "--service", "handover", "--no-daemon", "--", "python3", "-c", TWO_WRITES_SERVER, ending]);
        let mut server = KillOnDrop(run.arg(servers.len().to_string()).stdout(Stdio::piped()).spawn().unwrap());
        let mut said = String::new();
        std::io::BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut said).unwrap();
        assert_eq!(said.trim(), "listening 262", "the server's socket is not MPTCP");
        for ip in servers {
            let spread = lab.client().run(|| {
                let mut conn = multipath::blocking::Connection::connect((ip, 5100), &params).unwrap();
                assert!(conn.multipath_status().is_multipath(), "{}", conn.multipath_status());
                reply_spread(&mut conn, 200)
            });
            assert!(spread < rtt / 2, "{ending} to {ip}: the last write came {spread:?} after the first");
        }
        assert!(server.0.wait().unwrap().success(), "the server failed");
    }
}
