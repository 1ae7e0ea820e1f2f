//! What a daemon keeps about its network namespace, so that a crash loses
//! nothing:
//! - the path-manager type (`net.mptcp.pm_type`) it changed: the value
//!   found before the *first* daemon is kept, so that a daemon that crashed
//!   (and left the namespace on the userspace path manager) does not make
//!   the next one record 1 as the value to restore;
//! - the service type of each registered connection, so that the next
//!   daemon manages the connections that outlived a crash as they asked.
//!
//! `/run` is shared by every network namespace, so the file is named after
//! the namespace's cookie (`SO_NETNS_COOKIE`, never reused while the host
//! runs, unlike its inode), created exclusively and never through a
//! symbolic link.

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use multipath::ServiceType;

use crate::PmError;

const PM_TYPE: &str = "/proc/sys/net/mptcp/pm_type";
/// The userspace path manager.
const USERSPACE: &str = "1";

/// The namespace's path-manager type, taken over by a daemon.
#[derive(Debug)]
pub struct NamespaceState {
    file: PathBuf,
    original: String,
}

impl NamespaceState {
    /// Records the namespace's `pm_type` (unless a crashed daemon's record
    /// is there: its value is the original one) and switches to the
    /// userspace path manager. Call it while holding the namespace's lock
    /// (a started [`crate::Daemon`]).
    pub fn take_over(dir: &Path) -> Result<NamespaceState, PmError> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join(format!("netns-{}.pm_type", namespace_cookie()?));
        let original = match read_record(&file)? {
            Some(original) => {
                tracing::warn!(
                    file = %file.display(),
                    %original,
                    "a previous daemon did not stop cleanly; net.mptcp.pm_type will be restored to its original value"
                );
                original
            }
            None => {
                let current = std::fs::read_to_string(PM_TYPE)?.trim().to_owned();
                write_record(&file, &current)?;
                current
            }
        };
        std::fs::write(PM_TYPE, USERSPACE)?;
        Ok(NamespaceState { file, original })
    }

    /// The value `pm_type` had before any daemon.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// Puts the original value back and removes the record; the value.
    pub fn restore(self) -> Result<String, PmError> {
        std::fs::write(PM_TYPE, &self.original)?;
        std::fs::remove_file(&self.file)?;
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::remove_dir(dir); // only if no other namespace's daemon uses it
        }
        Ok(self.original)
    }
}

/// The service types of registered connections: one line per registration
/// (`token service`), appended as they come, rewritten with the live ones
/// when it has grown.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    file: std::fs::File,
    lines: usize,
}

/// Lines appended before the registry is rewritten with the live ones.
const REGISTRY_COMPACT_AFTER: usize = 65_536;

impl Registry {
    /// Opens the namespace's registry in `dir`, with what a previous daemon
    /// recorded (malformed lines are skipped).
    pub fn open(dir: &Path) -> Result<(Registry, HashMap<u32, ServiceType>), PmError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("netns-{}.registered", namespace_cookie()?));
        let mut recorded = HashMap::new();
        match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => {
                for line in io::BufReader::new(f.take(64 << 20)).lines() {
                    let line = line?;
                    let mut words = line.split_whitespace();
                    if let (Some(Ok(token)), Some(Ok(service))) =
                        (words.next().map(str::parse), words.next().map(str::parse::<ServiceType>))
                    {
                        recorded.insert(token, service);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())).into()),
        }
        let file = append_to(&path)?;
        Ok((Registry { path, file, lines: recorded.len() }, recorded))
    }

    /// Records a registration. Whether the registry has grown enough to be
    /// [rewritten](Registry::rewrite).
    pub fn record(&mut self, token: u32, service: ServiceType) -> io::Result<bool> {
        // One write per line: a crash cannot leave half of one glued to the next.
        self.file.write_all(format!("{token} {service}\n").as_bytes())?;
        self.lines += 1;
        Ok(self.lines >= REGISTRY_COMPACT_AFTER)
    }

    /// Replaces the registry with `live` (a new file renamed over it).
    pub fn rewrite(&mut self, live: &[(u32, ServiceType)]) -> io::Result<()> {
        let fresh = self.path.with_extension(format!("new-{}", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&fresh)?;
        let mut text = String::new();
        for (token, service) in live {
            text += &format!("{token} {service}\n");
        }
        f.write_all(text.as_bytes())?;
        std::fs::rename(&fresh, &self.path)?;
        self.file = append_to(&self.path)?;
        self.lines = live.len();
        Ok(())
    }

    /// Removes the registry (a clean stop: nothing outlives it to adopt).
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

fn append_to(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new().append(true).create(true).mode(0o644).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// The calling thread's network namespace's cookie.
fn namespace_cookie() -> io::Result<u64> {
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::DGRAM, None)?;
    crate::unix::netns_cookie(std::os::fd::AsFd::as_fd(&sock))
}

/// The recorded original value, if a record exists. A record that is not
/// a plain file of ours with a number in it is an error, not overwritten.
fn read_record(file: &Path) -> Result<Option<String>, PmError> {
    let mut f = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", file.display())).into()),
    };
    let mut text = String::new();
    Read::by_ref(&mut f).take(64).read_to_string(&mut text)?;
    let value = text.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} holds {value:?}, not a pm_type: remove it if it is stale", file.display()),
        )
        .into());
    }
    Ok(Some(value.to_owned()))
}

fn write_record(file: &Path, value: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)?;
    writeln!(f, "{value}")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_created_exclusively_and_read_back() {
        let dir = std::env::temp_dir().join(format!("mp-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("netns-1.pm_type");
        let _ = std::fs::remove_file(&file);
        assert_eq!(read_record(&file).unwrap(), None);
        write_record(&file, "0").unwrap();
        assert_eq!(read_record(&file).unwrap().as_deref(), Some("0"));
        assert!(write_record(&file, "1").is_err(), "never overwritten");
        std::fs::write(&file, "garbage").unwrap();
        assert!(read_record(&file).unwrap_err().to_string().contains("not a pm_type"));
        // A symbolic link is not followed, for reading or for writing.
        std::fs::remove_file(&file).unwrap();
        let target = dir.join("target");
        std::fs::write(&target, "0").unwrap();
        std::os::unix::fs::symlink(&target, &file).unwrap();
        assert!(read_record(&file).is_err());
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(dir.join("nowhere"), &file).unwrap();
        assert!(write_record(&file, "0").is_err());
        assert!(!dir.join("nowhere").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
