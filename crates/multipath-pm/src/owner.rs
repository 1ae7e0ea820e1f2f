//! Which process holds a socket, found from what the kernel recorded: the
//! socket's inode (in the socket diagnostics) among the descriptors under
//! `/proc/<pid>/fd`. A process that exits or closes its descriptor in
//! between is simply not found; nothing here is trusted for a decision
//! about a registration (those use the credentials of the daemon's socket).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// A process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: i32,
    /// Its executable, if readable.
    pub program: Option<PathBuf>,
}

/// The processes holding the sockets with these inodes, one per inode
/// (the first found; a socket may be shared across a fork). One pass
/// over `/proc`, ending early once every inode is found.
pub fn holders(inodes: &HashSet<u32>) -> HashMap<u32, Holder> {
    let mut found = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for entry in procs.flatten() {
        if found.len() == inodes.len() {
            break;
        }
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Some(inode) = std::fs::read_link(fd.path()).ok().and_then(|l| socket_inode(l.to_str()?)) else {
                continue;
            };
            if inodes.contains(&inode) && !found.contains_key(&inode) {
                let program = std::fs::read_link(entry.path().join("exe")).ok();
                found.insert(inode, Holder { pid, program });
            }
        }
    }
    found
}

/// The cgroup (v2) path of process `pid` (from the cgroup root), if it is
/// still the cgroup with id `id` that the kernel recorded for the socket:
/// a process that moved since gives `None`.
pub fn cgroup_path(pid: i32, id: u64) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
    let root = cgroup2_mount()?;
    let dir = root.join(path.trim_start_matches('/'));
    (std::fs::metadata(dir).ok()?.ino() == id).then_some(path)
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts), from this process's view.
fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE ...`
    text.lines().find_map(|l| {
        let (before, after) = l.split_once(" - ")?;
        let mount_point = before.split_whitespace().nth(4)?;
        (after.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// `pid`, its parent, and so on up to init (at most 64), as `/proc` shows
/// them now.
pub fn ancestry(pid: i32) -> Vec<i32> {
    let mut chain = vec![pid];
    while chain.len() < 64 {
        let Some(parent) = parent_of(*chain.last().expect("not empty")) else { break };
        if parent <= 0 || chain.contains(&parent) {
            break;
        }
        chain.push(parent);
    }
    chain
}

/// The parent pid, from `/proc/<pid>/stat` (field 4, after the command
/// name in parentheses, which may hold anything).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// `socket:[1234]` -> 1234.
fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_socket_of_this_process_is_found_by_its_inode() {
        assert_eq!(socket_inode("socket:[42]"), Some(42));
        assert_eq!(socket_inode("pipe:[42]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&listener)))
            .unwrap()
            .ino() as u32;
        let found = holders(&HashSet::from([inode, u32::MAX]));
        let me = found.get(&inode).expect("this process holds it");
        assert_eq!(me.pid, std::process::id() as i32);
        assert_eq!(me.program, std::env::current_exe().ok());
        assert!(!found.contains_key(&u32::MAX));
    }

    #[test]
    fn a_process_ancestry_ends_at_init() {
        let me = std::process::id() as i32;
        let chain = ancestry(me);
        assert_eq!(chain[0], me);
        assert_eq!(chain.get(1).copied(), Some(std::os::unix::process::parent_id() as i32));
        assert_eq!(ancestry(i32::MAX), vec![i32::MAX], "no such process: itself only");
    }

    #[test]
    fn this_process_cgroup_is_found_and_checked_against_its_id() {
        let Some(root) = cgroup2_mount() else { return }; // no cgroup v2 here: nothing to find
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let id = std::fs::metadata(root.join(path.trim_start_matches('/'))).unwrap().ino();
        let me = std::process::id() as i32;
        assert_eq!(cgroup_path(me, id).as_deref(), Some(path));
        assert_eq!(cgroup_path(me, id + 1), None, "another cgroup's id");
    }
}
