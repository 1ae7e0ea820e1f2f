//! Endpoints (`host:port`) and how their addresses are ordered for
//! happy-eyeballs connecting (RFC 8305).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::{Error, Result};

/// Where to connect: a socket address, or a host name and port to resolve.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A literal address.
    Addr(SocketAddr),
    /// A name resolved at connect time.
    Host {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Endpoint {
    /// A host name (or IP literal) and port.
    pub fn host(host: &str, port: u16) -> Result<Self> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Endpoint::Addr(SocketAddr::new(ip, port)));
        }
        let invalid = |reason| Error::InvalidEndpoint { input: format!("{host}:{port}"), reason };
        if bare.is_empty() {
            return Err(invalid("empty host"));
        }
        if bare.len() > 253 || !bare.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
            return Err(invalid("host is not a valid DNS name"));
        }
        Ok(Endpoint::Host { host: bare.to_owned(), port })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Addr(a) => a.port(),
            Endpoint::Host { port, .. } => *port,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(a) => a.fmt(f),
            Endpoint::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    /// Parses `host:port`, `1.2.3.4:port` or `[v6]:port`.
    fn from_str(s: &str) -> Result<Self> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Endpoint::Addr(addr));
        }
        let invalid = |reason| Error::InvalidEndpoint { input: s.to_owned(), reason };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| invalid("missing :port"))?;
        if host.contains(':') && !host.starts_with('[') {
            return Err(invalid("IPv6 addresses must be in brackets, as [::1]:80"));
        }
        let port = port.parse::<u16>().map_err(|_| invalid("port is not a number from 0 to 65535"))?;
        Endpoint::host(host, port).map_err(|_| invalid("host is not an IP address or a valid DNS name"))
    }
}

/// Anything a connection can be opened to.
pub trait ToEndpoint {
    /// The endpoint, or why this is not one.
    fn to_endpoint(self) -> Result<Endpoint>;
}

impl ToEndpoint for Endpoint {
    fn to_endpoint(self) -> Result<Endpoint> {
        Ok(self)
    }
}
impl ToEndpoint for SocketAddr {
    fn to_endpoint(self) -> Result<Endpoint> {
        Ok(Endpoint::Addr(self))
    }
}
impl ToEndpoint for &str {
    fn to_endpoint(self) -> Result<Endpoint> {
        self.parse()
    }
}
impl ToEndpoint for &String {
    fn to_endpoint(self) -> Result<Endpoint> {
        self.parse()
    }
}
impl ToEndpoint for (&str, u16) {
    fn to_endpoint(self) -> Result<Endpoint> {
        Endpoint::host(self.0, self.1)
    }
}
impl ToEndpoint for (IpAddr, u16) {
    fn to_endpoint(self) -> Result<Endpoint> {
        Ok(Endpoint::Addr(self.into()))
    }
}

/// The addresses to try for `endpoint`, in order, or why there are none.
pub(crate) fn ordered(
    endpoint: &Endpoint,
    resolved: Vec<SocketAddr>,
    params: &crate::Parameters,
) -> Result<Vec<SocketAddr>> {
    let total = resolved.len();
    let ordered = interleave(resolved, params.get_local_address());
    if ordered.is_empty() {
        let host = match endpoint {
            Endpoint::Host { host, .. } => host.clone(),
            Endpoint::Addr(a) => a.to_string(),
        };
        return Err(Error::NoAddresses { host, family_filtered: total > 0 });
    }
    Ok(ordered)
}

/// Orders resolved addresses for happy eyeballs: alternate families,
/// starting with the family the resolver listed first; keep only those of
/// `family_of`'s family when a local address is bound.
fn interleave(addrs: Vec<SocketAddr>, family_of: Option<SocketAddr>) -> Vec<SocketAddr> {
    let addrs: Vec<_> = match family_of {
        Some(local) => addrs.into_iter().filter(|a| a.is_ipv4() == local.is_ipv4()).collect(),
        None => addrs,
    };
    let Some(first) = addrs.first() else { return addrs };
    let first_v4 = first.is_ipv4();
    let (mut lead, mut other): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs.iter().partition(|a| a.is_ipv4() == first_v4);
    let mut out = Vec::with_capacity(addrs.len());
    lead.reverse();
    other.reverse();
    while !lead.is_empty() || !other.is_empty() {
        out.extend(lead.pop());
        out.extend(other.pop());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!("10.0.0.1:80".parse::<Endpoint>().unwrap(), Endpoint::Addr("10.0.0.1:80".parse().unwrap()));
        assert_eq!("[::1]:443".parse::<Endpoint>().unwrap(), Endpoint::Addr("[::1]:443".parse().unwrap()));
        assert_eq!(
            "check.mptcp.dev:443".parse::<Endpoint>().unwrap(),
            Endpoint::Host { host: "check.mptcp.dev".into(), port: 443 }
        );
        assert_eq!(("::1", 80).to_endpoint().unwrap(), Endpoint::Addr("[::1]:80".parse().unwrap()));
    }

    #[test]
    fn refuses_bad_endpoints() {
        for bad in ["", "example.com", "example.com:", "example.com:99999", "::1:80", "exa mple.com:80", ":80", "a:b:c"]
        {
            let err = bad.parse::<Endpoint>().unwrap_err();
            assert!(matches!(err, Error::InvalidEndpoint { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn interleaves_families() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mixed = vec![a("[::1]:1"), a("[::2]:1"), a("1.1.1.1:1"), a("[::3]:1"), a("2.2.2.2:1")];
        assert_eq!(
            interleave(mixed.clone(), None),
            vec![a("[::1]:1"), a("1.1.1.1:1"), a("[::2]:1"), a("2.2.2.2:1"), a("[::3]:1")]
        );
        assert_eq!(interleave(mixed, Some(a("0.0.0.0:0"))), vec![a("1.1.1.1:1"), a("2.2.2.2:1")]);
        assert!(interleave(vec![], None).is_empty());
    }
}
