//! `MAX_CONNECTIONS` and `MAX_CONNECTIONS_PER_IP`: how many WebSocket
//! connections may be open at once, in all and from one peer address.
//!
//! An upgrade takes a [`ConnectionSlot`] before the handshake; the slot lives
//! in the connection's session actor and gives its place back when the actor
//! is dropped, however the connection ended. Counting by ownership rather
//! than by "opened"/"closed" messages means no path can leak a slot.
//!
//! The per-address cap counts an IPv6 peer by its /64 network, since one
//! host usually holds a whole /64 and could otherwise open unlimited
//! connections from "different" addresses; IPv4-mapped IPv6 addresses count
//! as the IPv4 address they carry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::Metrics;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CapReached {
    #[error("the server is at its limit of {0} connections; try again later")]
    Total(usize),
    #[error("too many connections from your address (limit {0}); close one and try again")]
    PerIp(usize),
}

/// The open connections, counted in total and per address.
pub(crate) struct ConnectionCaps {
    max_total: usize,
    /// 0 is no cap.
    max_per_ip: usize,
    counts: Mutex<Counts>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    /// Only addresses with an open connection are kept, so the map cannot
    /// grow with the number of distinct peers seen.
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnectionCaps {
    pub(crate) fn new(max_total: usize, max_per_ip: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        metrics.max_connections.set(max_total as i64);
        Arc::new(ConnectionCaps {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
            metrics,
        })
    }

    /// Takes a place for a connection from `ip`, or says which cap is full.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, CapReached> {
        let ip = peer_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.max_total {
            return Err(CapReached::Total(self.max_total));
        }
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip > 0 && from_ip >= self.max_per_ip {
            return Err(CapReached::PerIp(self.max_per_ip));
        }
        counts.total += 1;
        counts.per_ip.insert(ip, from_ip + 1);
        self.metrics.connections.inc();
        self.metrics.connections_opened.inc();
        Ok(ConnectionSlot {
            caps: self.clone(),
            ip,
        })
    }

    /// Open connections right now (for the tests: the server
    /// reports them through the `connections` gauge).
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&ip);
            }
        }
        self.metrics.connections.dec();
    }
}

/// What the per-address cap counts `ip` as.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

/// One open connection's place; dropping it frees the place.
pub(crate) struct ConnectionSlot {
    caps: Arc<ConnectionCaps>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.caps.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn the_per_ip_cap_counts_each_address_apart() {
        let caps = ConnectionCaps::new(10, 2, Arc::new(Metrics::new()));
        let a1 = caps.acquire(ip(1)).unwrap();
        let _a2 = caps.acquire(ip(1)).unwrap();
        assert_eq!(caps.acquire(ip(1)).err(), Some(CapReached::PerIp(2)));
        let _b = caps.acquire(ip(2)).unwrap();
        drop(a1);
        assert!(caps.acquire(ip(1)).is_ok());
    }

    #[test]
    fn ipv6_peers_count_by_their_64_network() {
        let caps = ConnectionCaps::new(10, 1, Arc::new(Metrics::new()));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _a = caps.acquire(a).unwrap();
        assert_eq!(caps.acquire(b).err(), Some(CapReached::PerIp(1)));
        assert!(caps.acquire(other).is_ok());
        let _v4 = caps.acquire("192.0.2.7".parse().unwrap()).unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(caps.acquire(mapped).err(), Some(CapReached::PerIp(1)));
    }

    #[test]
    fn the_total_cap_frees_on_drop_without_leaking() {
        let caps = ConnectionCaps::new(3, 0, Arc::new(Metrics::new()));
        for round in 0..10_000u32 {
            let slots: Vec<_> = (0..3)
                .map(|i| caps.acquire(ip((round % 200) as u8 + i)).unwrap())
                .collect();
            assert_eq!(caps.acquire(ip(250)).err(), Some(CapReached::Total(3)));
            drop(slots);
        }
        assert_eq!(caps.open(), 0);
        assert!(caps.counts.lock().unwrap().per_ip.is_empty());
    }
}
