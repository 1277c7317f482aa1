//! The table of open client connections: how many there are, how many per client address, and
//! which of them are idle (no request in progress) in the order they went idle.
//!
//! Admission: a connection from a client already holding `--max-connections-per-client` is
//! refused. At `--max-connections`, the connection that has been idle longest is shed (closed)
//! to make room: an idle keep-alive connection is cheap to lose (a browser reconnects), and a
//! connection that never finished its headers is what a slowloris client holds. Only when
//! nothing is idle (every connection is a request in progress or a tab) is the newcomer
//! refused. So half-open connections cannot lock real users out, whatever their number.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached and nothing idle to shed.
    Full,
    /// The client holds `--max-connections-per-client` already.
    PerClient,
}

pub struct ConnTable {
    shared: Arc<Shared>,
}

struct Shared {
    max: usize,
    per_client: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    open: usize,
    by_client: HashMap<IpAddr, usize>,
    /// Idle connections by the order they went idle; the token closes one.
    idle: BTreeMap<u64, CancellationToken>,
    next_idle: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

/// What [`ConnTable::admit`] did to make room.
pub struct Admitted {
    pub permit: Permit,
    /// An idle connection was closed for this one.
    pub shed: bool,
}

impl ConnTable {
    pub fn new(max: usize, per_client: usize) -> ConnTable {
        ConnTable {
            shared: Arc::new(Shared {
                max: max.max(1),
                per_client: per_client.max(1),
                inner: Mutex::default(),
            }),
        }
    }

    pub fn open(&self) -> usize {
        self.shared.lock().open
    }

    /// Admits a connection, from `client` when its address is already known (a trusted
    /// proxy's connection learns it from its PROXY header: see [`Permit::set_client`]).
    pub fn admit(&self, client: Option<IpAddr>) -> Result<Admitted, Refusal> {
        let mut inner = self.shared.lock();
        if let Some(ip) = client {
            if inner.by_client.get(&ip).copied().unwrap_or(0) >= self.shared.per_client {
                return Err(Refusal::PerClient);
            }
        }
        let mut shed = false;
        if inner.open >= self.shared.max {
            // The victim's descriptor closes when its task sees the token; until then the
            // count runs one over, never more than the sheds in flight.
            match inner.idle.pop_first() {
                Some((_, victim)) => {
                    victim.cancel();
                    shed = true;
                }
                None => return Err(Refusal::Full),
            }
        }
        inner.open += 1;
        if let Some(ip) = client {
            *inner.by_client.entry(ip).or_default() += 1;
        }
        Ok(Admitted {
            permit: Permit {
                shared: self.shared.clone(),
                client,
                idle: None,
            },
            shed,
        })
    }
}

/// One admitted connection's place in the table, given back when it is dropped (the socket is
/// closed with it).
pub struct Permit {
    shared: Arc<Shared>,
    client: Option<IpAddr>,
    idle: Option<u64>,
}

impl Permit {
    /// Counts the connection against `ip` from now on.
    pub fn set_client(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        let mut inner = self.shared.lock();
        let held = inner.by_client.get(&ip).copied().unwrap_or(0);
        if held >= self.shared.per_client {
            return Err(Refusal::PerClient);
        }
        inner.by_client.insert(ip, held + 1);
        drop(inner);
        self.release_client();
        self.client = Some(ip);
        Ok(())
    }

    /// The connection has no request in progress: it may be shed; `close` sheds it.
    pub fn set_idle(&mut self, close: &CancellationToken) {
        let mut inner = self.shared.lock();
        if let Some(key) = self.idle.take() {
            inner.idle.remove(&key);
        }
        let key = inner.next_idle;
        inner.next_idle += 1;
        inner.idle.insert(key, close.clone());
        self.idle = Some(key);
    }

    /// A request is in progress (or the connection became a tab): not sheddable.
    pub fn set_busy(&mut self) {
        if let Some(key) = self.idle.take() {
            self.shared.lock().idle.remove(&key);
        }
    }

    fn release_client(&mut self) {
        if let Some(ip) = self.client.take() {
            let mut inner = self.shared.lock();
            if let Some(n) = inner.by_client.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    inner.by_client.remove(&ip);
                }
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.set_busy();
        self.release_client();
        self.shared.lock().open -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_client_cap_counts_each_address_alone() {
        let table = ConnTable::new(100, 2);
        let a1 = table.admit(Some(ip(2))).unwrap();
        let _a2 = table.admit(Some(ip(2))).unwrap();
        assert_eq!(table.admit(Some(ip(2))).err(), Some(Refusal::PerClient));
        let _b = table.admit(Some(ip(3))).unwrap();
        drop(a1);
        assert!(table.admit(Some(ip(2))).is_ok());
    }

    #[test]
    fn at_the_cap_the_longest_idle_is_shed_and_busy_ones_are_not() {
        let table = ConnTable::new(2, 10);
        let (t1, t2) = (CancellationToken::new(), CancellationToken::new());
        let mut c1 = table.admit(None).unwrap().permit;
        let mut c2 = table.admit(None).unwrap().permit;
        c1.set_idle(&t1);
        c2.set_idle(&t2);
        let third = table.admit(None).unwrap();
        assert!(third.shed);
        assert!(t1.is_cancelled() && !t2.is_cancelled());
        drop(c1); // the shed connection closes
        c2.set_busy();
        assert_eq!(table.admit(None).err(), Some(Refusal::Full));
        // Going idle again puts it at the back of the queue.
        c2.set_idle(&t2);
        assert!(table.admit(None).unwrap().shed);
        assert!(t2.is_cancelled());
    }

    #[test]
    fn a_proxied_connection_counts_against_its_real_client() {
        let table = ConnTable::new(10, 1);
        let mut via_proxy = table.admit(None).unwrap().permit;
        via_proxy.set_client(ip(9)).unwrap();
        assert_eq!(table.admit(Some(ip(9))).err(), Some(Refusal::PerClient));
        let mut another = table.admit(None).unwrap().permit;
        assert_eq!(another.set_client(ip(9)), Err(Refusal::PerClient));
        drop(via_proxy);
        assert!(another.set_client(ip(9)).is_ok());
        assert_eq!(table.open(), 1);
    }
}
