//! Session ids, and the node that owns them. A session lives in one node's processes, so a
//! load balancer must send all of its requests to that node; the id says which. With
//! `--node-id HH` (two lowercase hex digits) every id this node vends starts with `HH`, and the
//! other 30 digits (120 bits) come from the OS CSPRNG: ids stay 32 lowercase hex, as long and as
//! hard to guess as ever (2^120 is still far beyond any search). Without it all 32 are random.
//! `deploy/haproxy.cfg` routes on this prefix.
//!
//! A leaf: it names no other module (the config parses `--node-id` with it, the manager and the
//! server vend ids with its [`IdVendor`]).

/// `--node-id`: exactly two lowercase hex digits.
pub fn parse_node_id(s: &str) -> Result<String, String> {
    if s.len() == 2
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a node id: two lowercase hex digits, 00 to ff"
        ))
    }
}

/// The two ids of one session: `id` in its URL, `vended` the compact one Lua sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIds {
    pub id: String,
    pub vended: u64,
}

/// Vends [`SessionIds`]: the session manager for `GET /`, the server for sessions started
/// ahead of theirs (`--start-ahead`), from one sequence so no two sessions share an id.
pub struct IdVendor {
    node: Option<String>,
    next_vended: std::sync::atomic::AtomicU64,
}

impl IdVendor {
    /// Ids that name `node` (`--node-id`), vended ids counting from 1.
    pub fn new(node: Option<String>) -> IdVendor {
        IdVendor {
            node,
            next_vended: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub fn vend(&self) -> SessionIds {
        SessionIds {
            id: new_session_id(self.node.as_deref()),
            vended: self
                .next_vended
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// A new session id: 128 random bits as 32 lowercase hex, the first two replaced by `node`.
pub fn new_session_id(node: Option<&str>) -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    let mut id = uuid::Uuid::from_bytes(bytes).simple().to_string();
    if let Some(node) = node {
        id.replace_range(..node.len(), node);
    }
    id
}

/// Whether `s` has the shape of a session id (32 lowercase hex): anything else is not looked
/// up at all.
pub fn is_session_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_node_and_stay_random() {
        let a = new_session_id(Some("0f"));
        let b = new_session_id(Some("0f"));
        assert!(is_session_id(&a) && is_session_id(&b), "{a} {b}");
        assert_eq!((&a[..2], &b[..2]), ("0f", "0f"));
        assert_ne!(a[2..], b[2..]);
        assert!(is_session_id(&new_session_id(None)));
    }

    #[test]
    fn ids_are_32_lowercase_hex_and_distinct() {
        let a = new_session_id(None);
        let b = new_session_id(None);
        assert!(is_session_id(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_session_id("ABCDEF00000000000000000000000000"));
        assert!(!is_session_id("../etc/passwd"));
    }

    #[test]
    fn node_ids_are_two_lowercase_hex_digits() {
        assert_eq!(parse_node_id("01").unwrap(), "01");
        assert!(parse_node_id("ff").is_ok());
        for bad in ["1", "001", "FF", "g1", ""] {
            assert!(parse_node_id(bad).is_err(), "{bad}");
        }
    }
}
