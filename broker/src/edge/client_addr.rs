//! Who the client is. Normally the TCP peer. Behind a load balancer every peer is the balancer,
//! so the client address comes from it, but only from peers in `--trusted-proxy` (anyone else
//! could claim any address): a PROXY protocol header (v1 or v2, what HAProxy's `send-proxy`
//! writes) at the start of the connection, or else the `X-Forwarded-For` header of each
//! request (what nginx and HAProxy's `option forwardfor` add), read from the right, skipping
//! trusted hops. The address feeds the per-client connection cap and creation rate limit.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName};
use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The client address of one request, as an axum extension (`Extension<ClientAddr>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// `--trusted-proxy`: addresses (or networks) whose word on the client address is taken.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// `10.0.0.5` or `10.0.0.0/8`, IPv4 or IPv6.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or a network like 10.0.0.0/8"))
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer` by `X-Forwarded-For`: from the rightmost hop leftwards, the
    /// first address that is not a trusted proxy (an unreadable hop ends the walk there).
    pub fn forwarded_for(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
        let mut client = peer.to_canonical();
        let values: Vec<&str> = headers
            .get_all(XFF)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for hop in values.iter().flat_map(|v| v.split(',')).rev() {
            if !self.contains(client) {
                break;
            }
            match parse_hop(hop) {
                Some(ip) => client = ip,
                None => break,
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// What a connection knows about its peer before any request.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub trusted: bool,
    /// The client address a trusted proxy's PROXY header gave.
    pub proxied: Option<IpAddr>,
}

impl ConnInfo {
    /// The client address of one request on this connection.
    pub fn client(&self, trusted: &TrustedProxies, headers: &HeaderMap) -> ClientAddr {
        ClientAddr(match (self.proxied, self.trusted) {
            (Some(ip), _) => ip,
            (None, true) => trusted.forwarded_for(self.peer.ip(), headers),
            (None, false) => self.peer.ip().to_canonical(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("malformed PROXY header")]
    Malformed,
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// A v2 header with the TLVs HAProxy may add stays far below this; v1 is at most 107 bytes.
const MAX_HEADER: usize = 4096;
const V1_PREFIX: &[u8] = b"PROXY ";
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Reads a PROXY header if the connection starts with one. Returns the client address it
/// names (`None` without a header, or for a health check's `LOCAL`/`UNKNOWN`), and the bytes
/// read past it, which belong to the first HTTP request.
pub async fn read_proxy_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<(Option<IpAddr>, Bytes), ProxyHeaderError> {
    tokio::time::timeout(timeout, read_header(stream))
        .await
        .map_err(|_| ProxyHeaderError::Timeout(timeout))?
}

async fn read_header(stream: &mut TcpStream) -> Result<(Option<IpAddr>, Bytes), ProxyHeaderError> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        let starts = |sig: &[u8]| {
            let n = buf.len().min(sig.len());
            buf[..n] == sig[..n]
        };
        if !buf.is_empty() && !starts(V1_PREFIX) && !starts(V2_SIGNATURE) {
            return Ok((None, buf.freeze())); // plain HTTP
        }
        if buf.len() >= V1_PREFIX.len().min(V2_SIGNATURE.len()) {
            let parsed = HeaderResult::parse(&buf);
            if !parsed.is_incomplete() {
                let (client, len) = header_client(parsed)?;
                let rest = buf.split_off(len);
                return Ok((client, rest.freeze()));
            }
            // A v1 header is one line: a whole line that still does not parse never will.
            let v1_line_ended = buf.windows(2).any(|w| w == b"\r\n") || buf.len() > V1_MAX;
            if buf.starts_with(V1_PREFIX) && v1_line_ended {
                return Err(ProxyHeaderError::Malformed);
            }
        }
        if buf.len() >= MAX_HEADER {
            return Err(ProxyHeaderError::TooLong);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ProxyHeaderError::Malformed);
        }
    }
}

fn header_client(parsed: HeaderResult<'_>) -> Result<(Option<IpAddr>, usize), ProxyHeaderError> {
    match parsed {
        HeaderResult::V1(Ok(h)) => {
            let ip = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
                v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
                v1::Addresses::Unknown => None,
            };
            Ok((ip.map(|ip| ip.to_canonical()), h.header.len()))
        }
        HeaderResult::V2(Ok(h)) => {
            let ip = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some(IpAddr::V4(a.source_address)),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some(IpAddr::V6(a.source_address)),
                _ => None,
            };
            Ok((ip.map(|ip| ip.to_canonical()), h.header.len()))
        }
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Err(ProxyHeaderError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| parse_net(n).unwrap()).collect())
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_read_from_the_right_past_trusted_hops() {
        let t = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        let peer = ip("127.0.0.1");
        // A client cannot choose its address by writing its own X-Forwarded-For first.
        assert_eq!(
            t.forwarded_for(peer, &xff(&["6.6.6.6, 203.0.113.7"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            t.forwarded_for(peer, &xff(&["203.0.113.7", "10.1.2.3"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            t.forwarded_for(peer, &xff(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        assert_eq!(t.forwarded_for(peer, &xff(&[])), peer);
        assert_eq!(t.forwarded_for(peer, &xff(&["junk"])), peer);
        // An untrusted peer's header is never read.
        let untrusted = ip("192.0.2.1");
        assert_eq!(
            t.forwarded_for(untrusted, &xff(&["203.0.113.7"])),
            untrusted
        );
    }

    #[test]
    fn networks_and_single_addresses_parse() {
        assert!(parse_net("10.0.0.0/8").is_ok());
        assert!(parse_net("::1").is_ok());
        assert!(parse_net("nope").is_err());
        let t = trusted(&["127.0.0.1"]);
        assert!(t.contains(ip("::ffff:127.0.0.1")));
        assert!(!t.contains(ip("127.0.0.2")));
    }

    async fn through_socket(
        bytes: &'static [u8],
    ) -> Result<(Option<IpAddr>, Bytes), ProxyHeaderError> {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(bytes).await.unwrap();
            c
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let _client = writer.await.unwrap();
        read_proxy_header(&mut server, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn proxy_headers_give_the_client_and_keep_the_request() {
        let (ip1, rest) =
            through_socket(b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n")
                .await
                .unwrap();
        assert_eq!(ip1, Some(ip("203.0.113.7")));
        assert_eq!(&rest[..], b"GET / HTTP/1.1\r\n");
        let (none, rest) = through_socket(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!((none, &rest[..]), (None, &b"GET / HTTP/1.1\r\n"[..]));
        let (local, _) = through_socket(b"PROXY UNKNOWN\r\n").await.unwrap();
        assert_eq!(local, None);
        assert!(matches!(
            through_socket(b"PROXY TCP4 nonsense\r\n").await,
            Err(ProxyHeaderError::Malformed)
        ));
    }

    #[tokio::test]
    async fn v2_headers_parse() {
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "198.51.100.9:4000".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:80".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"GET /");
        let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let (client, rest) = through_socket(leaked).await.unwrap();
        assert_eq!(client, Some(ip("198.51.100.9")));
        assert_eq!(&rest[..], b"GET /");
    }
}
