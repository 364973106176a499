//! IPv4 CIDRs as Kubernetes uses them (`--cluster-cidr`, `spec.podCIDR`): parsing with
//! errors that say what is wrong, and carving a range into equal subnets (the node IPAM
//! controller's /24s of 10.244.0.0/16).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: its first address and prefix length, host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    /// Whether `other` lies entirely inside this network.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && u32::from(other.network) & Self::mask(self.prefix) == u32::from(self.network)
    }

    /// How many /`prefix` subnets this network holds (None if `prefix` is shorter than its own).
    pub fn subnet_count(&self, prefix: u8) -> Option<u64> {
        (prefix >= self.prefix && prefix <= 32).then(|| 1u64 << (prefix - self.prefix))
    }

    /// The `index`-th /`prefix` subnet of this network, if there is one.
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if index >= self.subnet_count(prefix)? {
            return None;
        }
        let step = 1u64 << (32 - prefix);
        let network = u32::from(self.network) as u64 + index * step;
        Some(Ipv4Cidr { network: Ipv4Addr::from(network as u32), prefix })
    }

    /// The index of `subnet` among this network's /`subnet.prefix` subnets.
    pub fn index_of(&self, subnet: &Ipv4Cidr) -> Option<u64> {
        self.contains(subnet)
            .then(|| (u32::from(subnet.network) - u32::from(self.network)) as u64 >> (32 - subnet.prefix))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    /// `10.244.1.0/24`; the error names what is wrong (not a CIDR, not IPv4, a bad prefix,
    /// host bits set — with the network that was probably meant).
    fn from_str(cidr: &str) -> Result<Ipv4Cidr, String> {
        let (addr, len) = cidr.split_once('/').ok_or_else(|| format!("{cidr:?} is not a CIDR (ADDRESS/PREFIX)"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{cidr:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 =
            len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("{cidr:?}: prefix {len:?} is not 0–32"))?;
        let network = u32::from(addr) & Ipv4Cidr::mask(prefix);
        if network != u32::from(addr) {
            return Err(format!("{cidr:?}: host bits are set (the network is {}/{prefix})", Ipv4Addr::from(network)));
        }
        Ok(Ipv4Cidr { network: addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parsing_says_what_is_wrong() {
        assert_eq!(cidr("10.244.0.0/16").to_string(), "10.244.0.0/16");
        let err = |s: &str| s.parse::<Ipv4Cidr>().unwrap_err();
        assert!(err("10.244.1.0").contains("is not a CIDR"));
        assert!(err("10.244.1.7/24").contains("host bits are set (the network is 10.244.1.0/24)"));
        assert!(err("10.244.1.0/33").contains("prefix \"33\" is not 0–32"));
        assert!(err("fd00::/64").contains("is not an IPv4 address"));
    }

    #[test]
    fn a_range_is_carved_into_subnets() {
        let cluster = cidr("10.244.0.0/16");
        assert_eq!(cluster.subnet_count(24), Some(256));
        assert_eq!(cluster.subnet(24, 0), Some(cidr("10.244.0.0/24")));
        assert_eq!(cluster.subnet(24, 255), Some(cidr("10.244.255.0/24")));
        assert_eq!(cluster.subnet(24, 256), None);
        assert_eq!(cluster.subnet(8, 0), None);
        assert_eq!(cluster.index_of(&cidr("10.244.7.0/24")), Some(7));
        assert_eq!(cluster.index_of(&cidr("10.245.7.0/24")), None);
        assert!(cluster.contains(&cidr("10.244.7.0/24")) && !cluster.contains(&cidr("10.0.0.0/8")));
    }
}
