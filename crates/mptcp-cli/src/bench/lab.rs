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
    /// The kernel's path manager, with cell (every path but the first) as a
    /// subflow endpoint.
    Kernel {
        /// Cell as backup endpoint (handover) or active (the others).
        cell_backup: bool,
    },
    /// `multipath`'s in-process path manager, the connection registered.
    Multipath,
    /// `multipath`'s path manager with the service type as its default,
    /// the connection never registered: found through the kernel's events
    /// and measured from the kernel, as for a program that knows nothing of
    /// multipath.
    Unregistered,
}

/// The contenders of the lab benchmarks that compare with single paths:
/// each path alone, the kernel's path manager, `multipath` registered and
/// unregistered.
pub const AGAINST_SINGLE_PATHS: [Contender; 5] = [
    Contender::Alone("wifi"),
    Contender::Alone("cell"),
    Contender::Kernel { cell_backup: false },
    Contender::Multipath,
    Contender::Unregistered,
];

/// Which family the benchmark's connection uses (the lab is dual stack).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The server's address in `family`.
pub fn server_ip(lab: &Lab, family: Family) -> IpAddr {
    match family {
        Family::V4 => lab.server_addr().into(),
        Family::V6 => lab.server_addr6().into(),
    }
}

/// The wildcard address of `family`, for the server's listener.
pub fn any(family: Family) -> SocketAddr {
    match family {
        Family::V4 => "0.0.0.0:0".parse().expect("address"),
        Family::V6 => "[::]:0".parse().expect("address"),
    }
}

/// A fresh lab and the parameters a client of `contender` connects with.
/// The manager, if any, lives as long as the returned handle.
pub fn prepare(
    contender: Contender,
    service: ServiceType,
    family: Family,
) -> Result<(Lab, Parameters, Option<Arc<Manager>>)> {
    prepare_in(&LabConfig::wifi_cell(), contender, service, family)
}

/// [`prepare`] in a lab of `config`'s paths; the kernel's contender has
/// an endpoint on every path but the first.
pub fn prepare_in(
    config: &LabConfig,
    contender: Contender,
    service: ServiceType,
    family: Family,
) -> Result<(Lab, Parameters, Option<Arc<Manager>>)> {
    prepare_with(config, contender, service, family, PolicyConfig::default())
}

/// [`prepare_in`] with the path manager's `policy`.
pub fn prepare_with(
    config: &LabConfig,
    contender: Contender,
    service: ServiceType,
    family: Family,
    policy: PolicyConfig,
) -> Result<(Lab, Parameters, Option<Arc<Manager>>)> {
    let lab = Lab::up(config).context("building the lab")?;
    let mut params = Parameters::tcp().multipath_service_type(service).nodelay(true);
    let manager = match contender {
        Contender::Alone(path) => {
            let ip = lab.path(path)?.client_addr_for(server_ip(&lab, family));
            params = params.multipath_service_type(ServiceType::None).local_address(SocketAddr::new(ip, 0));
            None
        }
        Contender::Kernel { cell_backup } => {
            for path in &config.paths[1..] {
                lab.add_kernel_endpoint(&path.name, cell_backup)?;
            }
            None
        }
        Contender::Multipath => {
            lab.client().sysctl("net.mptcp.pm_type", "1")?;
            let manager = Arc::new(lab.client().run(|| Manager::start(policy))?);
            params = params.path_manager(manager.clone());
            Some(manager)
        }
        Contender::Unregistered => {
            lab.client().sysctl("net.mptcp.pm_type", "1")?;
            let config = PolicyConfig { default_service: Some(service), ..policy };
            // No daemon runs in the lab's namespace: the library finds none
            // to register with.
            Some(Arc::new(lab.client().run(|| Manager::start(config))?))
        }
    };
    Ok((lab, params, manager))
}
