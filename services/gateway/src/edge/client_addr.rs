//! Who the client is: the connecting address, or — only when the connection comes from a
//! trusted proxy — the address that proxy saw, from `X-Forwarded-For`.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The client as the gateway determined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address (rate-limit key for anonymous callers).
    pub ip: IpAddr,
    /// The validated forwarding chain to pass upstream (before the gateway appends the
    /// peer), or `None` when the peer is the client.
    pub forwarded_for: Option<String>,
}

/// Walks `X-Forwarded-For` from the right, skipping trusted proxies; the first untrusted
/// address is the client. Entries that are not IP addresses end the walk (a client can
/// write anything on the left of the chain, so only what trusted proxies appended counts).
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return ClientAddr {
            ip: peer,
            forwarded_for: None,
        };
    }
    let chain: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut client = peer;
    let mut kept = chain.len();
    for (index, entry) in chain.iter().enumerate().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        kept = index;
        if !is_trusted(&ip) {
            break;
        }
    }
    let forwarded_for = (kept < chain.len()).then(|| chain[kept..].join(", "));
    ClientAddr {
        ip: client,
        forwarded_for,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().expect("value"));
        h
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        let got = client_addr(
            peer,
            &headers("1.2.3.4"),
            &["10.0.0.0/8".parse().expect("net")],
        );
        assert_eq!(
            got,
            ClientAddr {
                ip: peer,
                forwarded_for: None
            }
        );
    }

    #[test]
    fn the_first_untrusted_address_from_the_right_is_the_client() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        let got = client_addr(peer, &headers("6.6.6.6, 198.51.100.7, 10.0.0.5"), &trusted);
        assert_eq!(got.ip, "198.51.100.7".parse::<IpAddr>().expect("ip"));
        assert_eq!(got.forwarded_for.as_deref(), Some("198.51.100.7, 10.0.0.5"));
    }

    #[test]
    fn garbage_in_the_chain_stops_the_walk() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        let got = client_addr(peer, &headers("evil, 10.0.0.9"), &trusted);
        assert_eq!(got.ip, "10.0.0.9".parse::<IpAddr>().expect("ip"));
    }
}
