//! `mptcp ls`: the daemon's managed connections, one message each.
//!
//! `conn token=N service=S source=SRC [uid=U] [pid=P] remote=ADDR [active=PATH]
//! [subflow=PATH/LOCAL/active|backup/established|joining]... [held=PATH]...
//! [off=PATH]... [rcvbuf=NEED/CAP] [program=EXE]`,
//! then `end`. `program` comes last and takes the rest of the message (a
//! path may hold spaces). Keys this version does not know are skipped: a
//! newer daemon may say more.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::ProtocolError;
use crate::ServiceType;

/// Longest listing message, bytes (a program path may be 4 KiB).
pub const MAX_LISTED: usize = 8192;

/// One managed connection as the daemon lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// The kernel's token.
    pub token: u32,
    /// The service type enforced.
    pub service: ServiceType,
    /// Where the service type came from: `registered`, `run`,
    /// `rule:<name>` or `default`.
    pub source: String,
    /// The user owning the connection.
    pub uid: Option<u32>,
    /// The process holding its socket (the one that registered it, or
    /// found by its socket's inode).
    pub pid: Option<i32>,
    /// That process's executable.
    pub program: Option<PathBuf>,
    /// The peer.
    pub remote: SocketAddr,
    /// The path carrying its data.
    pub active: Option<String>,
    /// Its subflows.
    pub subflows: Vec<ListedSubflow>,
    /// Usable paths the kernel's subflow limit leaves without a subflow.
    pub held_back: Vec<String>,
    /// Aggregate: paths kept as backup because they cost the connection
    /// goodput (the contribution guard).
    pub backed_off: Vec<String>,
    /// Aggregate: the receive buffer its paths need and the most the host
    /// allows (`net.ipv4.tcp_rmem`), bytes, when the need is larger.
    pub receive_buffer: Option<(u64, u64)>,
}

/// One subflow of a [`Listed`] connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListedSubflow {
    /// The path it runs on.
    pub path: String,
    /// Its local address (port 0 while joining).
    pub local: SocketAddr,
    /// Flagged backup.
    pub backup: bool,
    /// Established (else joining).
    pub established: bool,
}

impl Listed {
    /// The message's text.
    pub fn encode(&self) -> String {
        let mut out = format!("conn token={} service={} source={}", self.token, self.service, self.source);
        if let Some(uid) = self.uid {
            out += &format!(" uid={uid}");
        }
        if let Some(pid) = self.pid {
            out += &format!(" pid={pid}");
        }
        out += &format!(" remote={}", self.remote);
        if let Some(active) = &self.active {
            out += &format!(" active={active}");
        }
        for s in &self.subflows {
            let (role, state) =
                (if s.backup { "backup" } else { "active" }, if s.established { "established" } else { "joining" });
            out += &format!(" subflow={}/{}/{role}/{state}", s.path, s.local);
        }
        for path in &self.held_back {
            out += &format!(" held={path}");
        }
        for path in &self.backed_off {
            out += &format!(" off={path}");
        }
        if let Some((need, cap)) = self.receive_buffer {
            out += &format!(" rcvbuf={need}/{cap}");
        }
        if let Some(program) = &self.program {
            out += &format!(" program={}", program.display());
        }
        out
    }

    /// Reads a message's text (after `conn `).
    pub(super) fn decode(fields: &str) -> Result<Listed, ProtocolError> {
        let malformed = || ProtocolError::Malformed(format!("conn {fields}"));
        let (fields, program) = match fields.split_once("program=") {
            Some((before, program)) if before.is_empty() || before.ends_with(' ') => {
                (before, Some(PathBuf::from(program)))
            }
            _ => (fields, None),
        };
        let (mut token, mut service, mut source, mut remote) = (None, None, None, None);
        let mut listed = Listed {
            token: 0,
            service: ServiceType::None,
            source: String::new(),
            uid: None,
            pid: None,
            program,
            remote: SocketAddr::from(([0, 0, 0, 0], 0)),
            active: None,
            subflows: Vec::new(),
            held_back: Vec::new(),
            backed_off: Vec::new(),
            receive_buffer: None,
        };
        for field in fields.split_whitespace() {
            let (key, value) = field.split_once('=').ok_or_else(malformed)?;
            match key {
                "token" => token = Some(value.parse().map_err(|_| malformed())?),
                "service" => service = Some(value.parse()?),
                "source" => source = Some(value.to_owned()),
                "uid" => listed.uid = Some(value.parse().map_err(|_| malformed())?),
                "pid" => listed.pid = Some(value.parse().map_err(|_| malformed())?),
                "remote" => remote = Some(value.parse().map_err(|_| malformed())?),
                "active" => listed.active = Some(value.to_owned()),
                "subflow" => listed.subflows.push(subflow(value).ok_or_else(malformed)?),
                "held" if !value.is_empty() => listed.held_back.push(value.to_owned()),
                "off" if !value.is_empty() => listed.backed_off.push(value.to_owned()),
                "rcvbuf" => {
                    let (need, cap) = value.split_once('/').ok_or_else(malformed)?;
                    let (need, cap) = (need.parse().map_err(|_| malformed())?, cap.parse().map_err(|_| malformed())?);
                    listed.receive_buffer = Some((need, cap));
                }
                _ => {}
            }
        }
        (listed.token, listed.service, listed.source, listed.remote) = (
            token.ok_or_else(malformed)?,
            service.ok_or_else(malformed)?,
            source.ok_or_else(malformed)?,
            remote.ok_or_else(malformed)?,
        );
        Ok(listed)
    }
}

fn subflow(text: &str) -> Option<ListedSubflow> {
    let mut parts = text.split('/');
    let (path, local, role, state) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let backup = match role {
        "active" => false,
        "backup" => true,
        _ => return None,
    };
    let established = match state {
        "established" => true,
        "joining" => false,
        _ => return None,
    };
    (parts.next().is_none() && !path.is_empty()).then_some(())?;
    Some(ListedSubflow { path: path.to_owned(), local: local.parse().ok()?, backup, established })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Listed {
        Listed {
            token: 0xdead_beef,
            service: ServiceType::Handover,
            source: "rule:browsers".into(),
            uid: Some(1000),
            pid: Some(4242),
            program: Some("/opt/my apps/curl".into()),
            remote: "[fd00::2]:8080".parse().unwrap(),
            active: Some("wifi".into()),
            subflows: vec![
                ListedSubflow {
                    path: "wifi".into(),
                    local: "[fd00:1::2]:40000".parse().unwrap(),
                    backup: false,
                    established: true,
                },
                ListedSubflow {
                    path: "cell".into(),
                    local: "10.2.0.2:0".parse().unwrap(),
                    backup: true,
                    established: false,
                },
            ],
            held_back: vec!["eth".into()],
            backed_off: vec!["cell".into()],
            receive_buffer: Some((2_000_000, 6_291_456)),
        }
    }

    #[test]
    fn a_listing_round_trips() {
        let l = sample();
        let text = l.encode();
        assert!(text.ends_with(" program=/opt/my apps/curl"), "{text}");
        assert_eq!(Listed::decode(text.strip_prefix("conn ").unwrap()), Ok(l));
        let bare = Listed {
            uid: None,
            pid: None,
            program: None,
            active: None,
            subflows: vec![],
            held_back: vec![],
            backed_off: vec![],
            receive_buffer: None,
            ..sample()
        };
        assert_eq!(Listed::decode(bare.encode().strip_prefix("conn ").unwrap()), Ok(bare));
    }

    #[test]
    fn unknown_keys_are_skipped_and_bad_values_refused() {
        let l = Listed::decode("token=1 service=aggregate source=default remote=1.2.3.4:80 colour=blue").unwrap();
        assert_eq!((l.token, l.service), (1, ServiceType::Aggregate));
        for bad in [
            "service=aggregate source=default remote=1.2.3.4:80",
            "token=x service=aggregate source=default remote=1.2.3.4:80",
            "token=1 service=aggregate source=default remote=nowhere",
            "token=1 service=aggregate source=default remote=1.2.3.4:80 subflow=wifi/1.2.3.4:1/maybe/established",
            "token=1 service=aggregate source=default remote=1.2.3.4:80 subflow=wifi/1.2.3.4:1/active",
            "token=1 service=aggregate source=default remote=1.2.3.4:80 loose",
            "token=1 service=aggregate source=default remote=1.2.3.4:80 rcvbuf=12",
            "token=1 service=aggregate source=default remote=1.2.3.4:80 rcvbuf=1/x",
        ] {
            assert!(Listed::decode(bad).is_err(), "{bad}");
        }
    }
}
