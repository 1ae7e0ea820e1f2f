//! Waiting for the signal that ends a long-running command.

use anyhow::Result;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT, SIGTERM and SIGHUP, caught from the moment this is created, so
/// a signal during start-up still ends the command cleanly.
pub struct Shutdown {
    rt: tokio::runtime::Runtime,
    signals: [Signal; 3],
}

impl Shutdown {
    /// Starts catching the signals.
    pub fn listen() -> Result<Shutdown> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let signals = rt.block_on(async {
            Ok::<_, std::io::Error>([
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ])
        })?;
        Ok(Shutdown { rt, signals })
    }

    /// Blocks until one of them arrives, or until `running` turns false
    /// (checked every 200 ms): whether a signal ended the wait.
    pub fn wait_while(self, running: impl Fn() -> bool) -> bool {
        let Shutdown { rt, signals: [mut int, mut term, mut hup] } = self;
        rt.block_on(async {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = int.recv() => return true,
                    _ = term.recv() => return true,
                    _ = hup.recv() => return true,
                    _ = tick.tick() => if !running() { return false },
                }
            }
        })
    }

    /// Blocks until one of them arrives (or already has).
    pub fn wait(self) {
        self.wait_while(|| true);
    }
}
