//! Real multi-path test networks in Linux network namespaces.
//!
//! A [`Lab`] is a client with several named paths ("wifi", "cell") to a
//! router, and a server behind the router. Each path has its own subnet,
//! a default route whose metric follows the path's rank, source-based
//! policy routing so every local address leaves through its own interface,
//! a rate shaper, one-way delay and random loss in both directions, and
//! carrier-style source filtering in the router. Paths can be taken down
//! and up, blackholed, and reshaped while traffic flows.
//!
//! ```no_run
//! use multipath_lab::{Lab, LabConfig};
//!
//! let lab = Lab::up(&LabConfig::wifi_cell())?;
//! let rtt = lab.ping("cell", 5, std::time::Duration::from_millis(50))?;
//! println!("cell RTT {:?}", rtt.median());
//! lab.set_link("wifi", false)?; // Wi-Fi gone
//! # Ok::<(), multipath_lab::LabError>(())
//! ```
//!
//! Needs root. Everything a lab creates lives in its own namespaces
//! (`mpl<pid>x<n>-cli|rtr|srv`); dropping the lab removes them, and
//! [`cleanup::remove_labs`] removes labs whose process died.
#![warn(missing_docs)]

pub mod cleanup;
mod cmd;
mod config;
pub mod delay_line;
mod error;
mod lab;
pub mod measure;
mod netns;
mod offload;
mod ping;
pub mod testing;
pub mod traffic;

pub use config::{DelayMode, Families, LabConfig, LinkShape, PathConfig};
pub use error::{LabError, Result};
pub use lab::{is_root, Lab, Path, NAMESPACE_PREFIX, SERVER_ADDR};
pub use netns::Netns;
pub use ping::PingStats;
