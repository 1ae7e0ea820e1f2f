//! What a daemon changes in its network namespace, and puts back: the
//! path-manager type (`net.mptcp.pm_type`). The value found before the
//! *first* daemon is kept in a state file, so that a daemon that crashed
//! (and left the namespace on the userspace path manager) does not make
//! the next one record 1 as the value to restore.
//!
//! `/run` is shared by every network namespace, so the file is named after
//! the namespace's cookie (`SO_NETNS_COOKIE`, never reused while the host
//! runs, unlike its inode), created exclusively and never through a
//! symbolic link.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
        Ok(self.original)
    }
}

/// The calling thread's network namespace's cookie (Linux 5.14+).
fn namespace_cookie() -> io::Result<u64> {
    const SO_NETNS_COOKIE: i32 = 71;
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::DGRAM, None)?;
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` is valid for `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
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
