//! What the lab benchmarks compare: a connection set up for one contender
//! in a fresh lab.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use multipath::{Parameters, ServiceType};
use multipath_lab::{Lab, LabConfig};
use multipath_pm::policy::PolicyConfig;
use multipath_pm::Manager;

/// One side of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    /// Plain TCP bound to one path's address.
    Alone(&'static str),
    /// The kernel's path manager, with cell as a subflow endpoint.
    Kernel {
        /// Cell as backup endpoint (handover) or active (the others).
        cell_backup: bool,
    },
    /// `multipath`'s in-process path manager.
    Multipath,
}

/// A fresh lab and the parameters a client of `contender` connects with.
/// The manager, if any, lives as long as the returned handle.
pub fn prepare(contender: Contender, service: ServiceType) -> Result<(Lab, Parameters, Option<Arc<Manager>>)> {
    let lab = Lab::up(&LabConfig::wifi_cell()).context("building the lab")?;
    let mut params = Parameters::tcp().multipath_service_type(service).nodelay(true);
    let manager = match contender {
        Contender::Alone(path) => {
            let ip: IpAddr = lab.path(path)?.client_addr().into();
            params = params.multipath_service_type(ServiceType::None).local_address(SocketAddr::new(ip, 0));
            None
        }
        Contender::Kernel { cell_backup } => {
            lab.add_kernel_endpoint("cell", cell_backup)?;
            None
        }
        Contender::Multipath => {
            lab.client().sysctl("net.mptcp.pm_type", "1")?;
            let manager = Arc::new(lab.client().run(|| Manager::start(PolicyConfig::default()))?);
            params = params.path_manager(manager.clone());
            Some(manager)
        }
    };
    Ok((lab, params, manager))
}
