//! Forked workers get their own string-hash seed (see `worker/src/hash_seed.rs`).
//!
//! The zygote's situation, reproduced: one single-threaded process forks workers from the same
//! state, each builds a VM right after its fork. Lua derives the seed from the time in seconds
//! and addresses that a fork copies, so without a stack of its own per VM every child iterated
//! a table of string keys in the same order. A plain `main` (no test harness, so no threads):
//! forking is sound here.

use std::io::Read;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};

/// The order `pairs` visits 64 string keys: it follows the VM's string-hash seed. The keys are
/// long because Lua's string hash moves a seed's high bits down only two a byte: the slots of
/// five-byte keys follow just the seed's low ~16 bits, and two VMs with different seeds shared
/// their order about once in 400 runs of five. Past a dozen bytes every bit of the seed counts
/// (2,000 forked VMs, 2,000 orders).
const PROBE: &str = "local t = {} for i = 1, 64 do t['a much longer key, number ' .. i] = i end \
                     local o = {} for k, v in pairs(t) do o[#o + 1] = v end \
                     return table.concat(o, ',')";

/// Builds a VM in a child just forked, and reports its probe on `report`.
fn child(report: std::os::fd::OwnedFd) -> ! {
    let code = match luabroker_worker::sandbox::new_vm()
        .and_then(|lua| lua.load(PROBE).eval::<String>())
    {
        Ok(order) => match nix::unistd::write(&report, order.as_bytes()) {
            Ok(_) => 0,
            Err(_) => 2,
        },
        Err(_) => 1,
    };
    // SAFETY: ends the child at once, without running the parent's exit handlers.
    unsafe { nix::libc::_exit(code) }
}

const CHILDREN: usize = 6;

fn main() {
    // Everything the parent needs is allocated before the first fork, so every child starts
    // from the same heap, as the zygote's children do.
    let mut pipes = Vec::with_capacity(CHILDREN);
    for _ in 0..CHILDREN {
        pipes.push(pipe().expect("pipe"));
    }
    let mut readers = Vec::with_capacity(CHILDREN);
    let mut pids = Vec::with_capacity(CHILDREN);
    for (read, write) in pipes {
        // SAFETY: this test binary has one thread (harness = false), so the child is a complete
        // copy of the process and may allocate and run Lua.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => child(write),
            ForkResult::Parent { child } => {
                drop(write);
                readers.push(read);
                pids.push(child);
            }
        }
    }
    let mut orders = Vec::new();
    for (read, pid) in readers.into_iter().zip(pids) {
        let mut order = String::new();
        std::fs::File::from(read)
            .read_to_string(&mut order)
            .expect("read the child's report");
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0));
        orders.push(order);
    }
    let distinct: std::collections::HashSet<&String> = orders.iter().collect();
    assert_eq!(
        distinct.len(),
        orders.len(),
        "VMs built in forked children share a string-hash seed: {orders:#?}"
    );
    println!("test forked_vms_get_their_own_string_hash_seed ... ok");
    println!("1 passed, 0 failed");
}
