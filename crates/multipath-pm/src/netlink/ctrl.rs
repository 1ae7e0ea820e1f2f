//! The generic-netlink controller: resolving a family's id and its
//! multicast groups by name (ids are assigned at boot, never fixed).

use super::codec::consts::{NLM_F_ACK, NLM_F_REQUEST};
use super::codec::{genl_request, Attrs, DecodeError, Header};

/// The controller's fixed family id (`GENL_ID_CTRL`).
pub const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;

/// A resolved family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    /// The family id to put in `nlmsghdr.nlmsg_type`.
    pub id: u16,
    /// Its multicast groups: (name, id).
    pub groups: Vec<(String, u32)>,
}

impl Family {
    /// The id of the multicast group `name`.
    pub fn group(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|(n, _)| n == name).map(|&(_, id)| id)
    }
}

/// `CTRL_CMD_GETFAMILY` for `name`.
pub fn get_family_request(name: &str, seq: u32) -> Vec<u8> {
    let header = Header { ty: GENL_ID_CTRL, flags: NLM_F_REQUEST | NLM_F_ACK, seq, pid: 0 };
    genl_request(header, CTRL_CMD_GETFAMILY, 1, |a| {
        a.string(CTRL_ATTR_FAMILY_NAME, name);
    })
}

/// Parses the controller's reply attributes.
pub fn parse_family(attrs: &[u8]) -> Result<Family, DecodeError> {
    let mut id = None;
    let mut groups = Vec::new();
    for attr in Attrs::new(attrs) {
        let attr = attr?;
        match attr.ty {
            CTRL_ATTR_FAMILY_ID => id = Some(attr.u16()?),
            CTRL_ATTR_MCAST_GROUPS => {
                for group in attr.nested() {
                    let (mut name, mut gid) = (None, None);
                    for field in group?.nested() {
                        let field = field?;
                        match field.ty {
                            CTRL_ATTR_MCAST_GRP_NAME => name = Some(field.string()),
                            CTRL_ATTR_MCAST_GRP_ID => gid = Some(field.u32()?),
                            _ => {}
                        }
                    }
                    if let (Some(n), Some(g)) = (name, gid) {
                        groups.push((n, g));
                    }
                }
            }
            _ => {}
        }
    }
    let id = id.ok_or_else(|| DecodeError::new("family reply without CTRL_ATTR_FAMILY_ID"))?;
    Ok(Family { id, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::codec::{messages, Message};

    #[test]
    fn parses_a_family_reply() {
        let reply = genl_request(Header { ty: GENL_ID_CTRL, flags: 0, seq: 1, pid: 0 }, 1, 2, |a| {
            a.string(CTRL_ATTR_FAMILY_NAME, "mptcp_pm").u16(CTRL_ATTR_FAMILY_ID, 0x1d).nested(
                CTRL_ATTR_MCAST_GROUPS,
                |g| {
                    g.nested(1, |e| {
                        e.string(CTRL_ATTR_MCAST_GRP_NAME, "mptcp_pm_cmd_grp").u32(CTRL_ATTR_MCAST_GRP_ID, 9);
                    })
                    .nested(2, |e| {
                        e.u32(CTRL_ATTR_MCAST_GRP_ID, 10).string(CTRL_ATTR_MCAST_GRP_NAME, "mptcp_pm_events");
                    });
                },
            );
        });
        let Some(Ok(Message::Genl { attrs, .. })) = messages(&reply).next() else { panic!() };
        let family = parse_family(attrs).unwrap();
        assert_eq!(family.id, 0x1d);
        assert_eq!(family.group("mptcp_pm_events"), Some(10));
        assert_eq!(family.group("nope"), None);
        assert!(parse_family(&[]).is_err());
    }
}
