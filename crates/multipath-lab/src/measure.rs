//! Plain TCP goodput across one path: the lab's own yardstick.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::{Lab, LabError, Result};

/// Which way data flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

impl Lab {
    /// Goodput in bits/s of one plain TCP flow over `path` in `direction`
    /// for `duration`, counted at the receiver after the first second (slow
    /// start excluded).
    pub fn tcp_goodput(&self, path: &str, direction: Direction, duration: Duration) -> Result<f64> {
        let from = self.path(path)?.client_addr();
        let listener = self
            .server()
            .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .map_err(|e| LabError::io("bind goodput server", e))?;
        let port = listener.local_addr().map_err(|e| LabError::io("local_addr", e))?.port();
        // accept() honours SO_RCVTIMEO: the server gives up if the client never comes.
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| LabError::io("SO_RCVTIMEO", e))?;
        let server = std::thread::spawn(move || -> std::io::Result<Option<f64>> {
            let (stream, _) = listener.accept()?;
            match direction {
                Direction::Up => receive(stream, duration).map(Some),
                Direction::Down => send(stream, duration).map(|_| None),
            }
        });
        let target = SocketAddr::V4(SocketAddrV4::new(self.server_addr(), port));
        let client = self.client().run(|| -> std::io::Result<Option<f64>> {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            sock.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())?;
            sock.connect_timeout(&target.into(), Duration::from_secs(5))?;
            let stream: TcpStream = sock.into();
            match direction {
                Direction::Up => send(stream, duration).map(|_| None),
                Direction::Down => receive(stream, duration).map(Some),
            }
        });
        let server = server.join().map_err(|_| LabError::Measure("goodput server panicked".into()))?;
        let bps = client.and_then(|c| server.map(|s| c.or(s))).map_err(|e| LabError::io("goodput transfer", e))?;
        bps.ok_or_else(|| LabError::Measure("no receiver result".into()))
    }
}

fn send(mut stream: TcpStream, duration: Duration) -> std::io::Result<()> {
    let chunk = vec![0x5au8; 64 * 1024];
    let end = Instant::now() + duration;
    while Instant::now() < end {
        stream.write_all(&chunk)?;
    }
    stream.shutdown(std::net::Shutdown::Write)
}

/// Reads until EOF; returns bits/s over the part after the first second.
fn receive(mut stream: TcpStream, duration: Duration) -> std::io::Result<f64> {
    let warmup = Duration::from_secs(1).min(duration / 3);
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    let (mut counted, mut window_start) = (0u64, None);
    let mut last = start;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        last = Instant::now();
        if last - start >= warmup {
            match window_start {
                None => window_start = Some(last),
                Some(_) => counted += n as u64,
            }
        }
    }
    let window = window_start.map_or(Duration::ZERO, |w| last - w);
    if window < Duration::from_millis(100) {
        return Err(std::io::Error::other("transfer too short to measure"));
    }
    Ok(counted as f64 * 8.0 / window.as_secs_f64())
}
