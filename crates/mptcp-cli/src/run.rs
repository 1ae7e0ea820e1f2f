//! `mptcp run --service T -- PROGRAM ARGS...`: an unmodified program under
//! a service type. The program is started with the preload library
//! (`libmultipath_preload.so`): its TCP sockets become MPTCP, and each
//! connection is registered with the namespace's daemon by the program's
//! own process, so the daemon judges the program, not `mptcp`.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use multipath::daemon_client::Daemon;
use multipath::ServiceType;

/// The preload library's file name.
const PRELOAD: &str = "libmultipath_preload.so";

#[derive(Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// The service type for the program's connections.
    #[arg(long, short)]
    service: ServiceType,
    /// Without a daemon: the sockets become MPTCP, and the kernel's path
    /// manager (its `ip mptcp endpoint`s) decides their subflows; no service
    /// type is enforced.
    #[arg(long)]
    no_daemon: bool,
    /// The program and its arguments.
    #[arg(required = true, num_args = 1.., value_name = "PROGRAM")]
    command: Vec<OsString>,
}

pub fn run(args: RunArgs) -> Result<()> {
    let library = preload_library()?;
    let (program, rest) = args.command.split_first().expect("clap requires PROGRAM");
    let executable = find_program(program)?;
    let registers = !args.no_daemon && args.service != ServiceType::None;
    if registers {
        check_daemon(args.service, &executable)?;
    } else if args.no_daemon {
        eprintln!(
            "mptcp run: no daemon: {}'s TCP connections use MPTCP, but the kernel's path manager decides their \
             subflows (its endpoints, `ip mptcp endpoint`); service type {} is not enforced",
            program.to_string_lossy(),
            args.service
        );
    }
    let mut command = std::process::Command::new(&executable);
    command.arg0(program).args(rest);
    command.env("LD_PRELOAD", prepend(&library, std::env::var_os("LD_PRELOAD")));
    command.env("MULTIPATH_RUN_SERVICE", args.service.as_str());
    command.env("MULTIPATH_RUN_REGISTER", if registers { "1" } else { "0" });
    // Go makes its own system calls, past any preload: its own switch
    // (Go 1.21+), unless the user set one.
    let godebug = std::env::var("GODEBUG").unwrap_or_default();
    if !godebug.contains("multipathtcp=") {
        let on = if args.service == ServiceType::None { "0" } else { "1" };
        let joined =
            if godebug.is_empty() { format!("multipathtcp={on}") } else { format!("{godebug},multipathtcp={on}") };
        command.env("GODEBUG", joined);
    }
    // Only returns on failure.
    let e = command.exec();
    bail!("cannot run {}: {e}", executable.display())
}

/// The preload library: `MULTIPATH_PRELOAD`, else next to this executable,
/// else in `deps/` beside it (where cargo builds it along with `mptcp`),
/// else in `../lib/multipath/` from it (an installation).
fn preload_library() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MULTIPATH_PRELOAD") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("MULTIPATH_PRELOAD names {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("finding the mptcp executable")?;
    let dir = exe.parent().context("the mptcp executable has no directory")?;
    let candidates = [dir.join(PRELOAD), dir.join("deps").join(PRELOAD), dir.join("../lib/multipath").join(PRELOAD)];
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "the preload library {PRELOAD} is not next to {} nor in its deps/ (cargo builds it with mptcp; \
             or set MULTIPATH_PRELOAD to its path)",
            exe.display()
        )
    })
}

/// `program` as `execvp` would find it, made absolute: the daemon names
/// programs by their full path.
fn find_program(program: &OsStr) -> Result<PathBuf> {
    let given = Path::new(program);
    let found = if given.components().count() > 1 {
        Some(given.to_path_buf()).filter(|p| is_executable(p))
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        std::env::split_paths(&path).map(|dir| dir.join(given)).find(|p| is_executable(p))
    };
    let found = found.with_context(|| format!("{}: no such program", given.display()))?;
    found.canonicalize().with_context(|| format!("resolving {}", found.display()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The daemon is there, and would grant `service` to `program` run by this
/// user; each connection is checked again when it registers.
fn check_daemon(service: ServiceType, program: &Path) -> Result<()> {
    let daemon = Daemon::discover();
    let checked = daemon.check(service, program);
    if checked.as_ref().is_ok_and(|granted| granted.is_ok()) {
        // This process becomes the program (exec keeps the pid): its
        // connections and its children's that nothing registers (Go,
        // static programs) get the service type too.
        match daemon.begin_run(service) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                eprintln!("mptcp run: the daemon keeps no session ({reason}); the preload library alone")
            }
            Err(e) => return Err(e).context(format!("asking the path-manager daemon at {}", daemon.address())),
        }
    }
    match checked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => bail!("{service} is not granted to {}: {reason}", program.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{e}; or run with --no-daemon for MPTCP sockets without a service type")
        }
        // A program path too long to ask about: each registration says.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        Err(e) => Err(e).context(format!("asking the path-manager daemon at {}", daemon.address())),
    }
}

/// `first` ahead of what `LD_PRELOAD` held (space-separated, as ld.so
/// reads it).
fn prepend(first: &Path, existing: Option<OsString>) -> OsString {
    let mut out = OsString::from(first);
    if let Some(existing) = existing.filter(|e| !e.is_empty()) {
        out.push(" ");
        out.push(existing);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_goes_first_in_ld_preload() {
        assert_eq!(prepend(Path::new("/a/lib.so"), None), "/a/lib.so");
        assert_eq!(prepend(Path::new("/a/lib.so"), Some("".into())), "/a/lib.so");
        assert_eq!(prepend(Path::new("/a/lib.so"), Some("/b/x.so".into())), "/a/lib.so /b/x.so");
    }

    #[test]
    fn programs_are_found_on_the_path_and_made_absolute() {
        let sh = find_program(OsStr::new("sh")).unwrap();
        assert!(sh.is_absolute() && is_executable(&sh), "{}", sh.display());
        let e = find_program(OsStr::new("no-such-program-here")).unwrap_err();
        assert!(e.to_string().contains("no such program"), "{e}");
        assert!(find_program(OsStr::new("/etc/passwd")).is_err(), "not executable");
    }
}
