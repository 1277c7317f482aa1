//! Lua's string-hash seed, one per VM (ARCHITECTURE.md 5, "Ready VMs").
//!
//! Lua 5.4 fixes a state's string-hash seed once, in `lua_newstate` (`luai_makeseed`): a hash of
//! the time in seconds and three addresses, the new state's, a local variable's on the C stack
//! and `lua_newstate`'s own. It cannot be changed later, since the state's first strings are
//! hashed with it. An exec'd process gets fresh addresses from ASLR, but the workers forked from
//! one zygote share its address space layout, and so, within one second, their seed: measured,
//! VMs built right after the fork iterated a table of string keys in the same order in every
//! worker. Building the VM after the fork is therefore not enough.
//!
//! So the state is created on a C stack of its own, mapped at a random address (and entered at
//! a random 16-byte offset): the local variable's address differs for every VM, and with it the
//! seed. The stack exists only while the state is created; the VM then runs on the ordinary one.

use std::num::NonZeroUsize;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use nix::sys::mman::{mmap_anonymous, mprotect, munmap, MapFlags, ProtFlags};

/// Enough for `lua_newstate` and opening the standard libraries many times over.
const STACK_SIZE: usize = 256 * 1024;
/// One inaccessible page at the end the stack grows towards: an overflow faults.
const GUARD: usize = 4096;
/// Where the stack may be mapped: 2^26 page positions, inside every 64-bit address space Linux
/// offers (39 bits and up); a hint the kernel cannot honour still leaves the random offset.
const PLACES: std::ops::Range<u64> = (1 << 32)..(1 << 38);

/// Done once in the zygote, before it forks: the `getrandom` crate finds libc's `getrandom`
/// with `dlsym` the first time a process draws random bytes, which walks ld.so's symbol tables
/// (≈ 9 page faults in every forked worker). Forked workers inherit the pointer it cached;
/// each still draws its own bytes.
pub fn look_up_getrandom() {
    let _ = getrandom::fill(&mut [0u8; 1]);
}

/// Runs `make` (which creates the Lua state) on a freshly mapped stack at a random address,
/// so the state gets a string-hash seed no other VM of this zygote shares. A panic in `make`
/// is carried back to the caller.
pub fn with_own_seed<R>(make: impl FnOnce() -> R) -> std::io::Result<R> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
    let (a, b) = random.split_at(8);
    let place = u64::from_le_bytes(a.try_into().unwrap_or_default());
    let offset = u64::from_le_bytes(b.try_into().unwrap_or_default());
    let pages = (PLACES.end - PLACES.start) / GUARD as u64;
    let hint = NonZeroUsize::new((PLACES.start + (place % pages) * GUARD as u64) as usize);
    // 0..4080 bytes, a multiple of the 16-byte stack alignment.
    let trim = (offset % 256) as usize * 16;
    let total = NonZeroUsize::new(GUARD + STACK_SIZE).expect("a non-zero size");
    // SAFETY: an anonymous private mapping at an address the kernel chooses (the hint is only
    // a hint: without MAP_FIXED nothing already mapped is replaced); it belongs to this
    // function alone until the `munmap` below.
    let region = unsafe {
        mmap_anonymous(
            hint,
            total,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE | MapFlags::MAP_STACK,
        )
    }
    .map_err(std::io::Error::from)?;
    let start = region.as_ptr() as *mut u8;
    let descending = matches!(psm::StackDirection::new(), psm::StackDirection::Descending);
    // The guard goes where the stack grows to; the first frame lands `trim` bytes in from the
    // other end.
    let (guard, base) = if descending {
        (start, start.wrapping_add(GUARD))
    } else {
        (start.wrapping_add(STACK_SIZE), start.wrapping_add(trim))
    };
    let size = STACK_SIZE - trim;
    // SAFETY: `guard` is a page inside the mapping just made.
    let guarded = unsafe {
        mprotect(
            NonNull::new(guard.cast()).expect("inside a mapping"),
            GUARD,
            ProtFlags::PROT_NONE,
        )
    };
    let ran = match guarded {
        // SAFETY: `base` is page-aligned and `size` a multiple of 16, so both ends of the stack
        // are aligned as x86-64 and AArch64 require; the region is mapped, writable and ours,
        // with a guard page past its growing end, and it outlives the call. `make` cannot
        // unwind out of `on_stack`: `catch_unwind` stops a panic inside, and Lua's own errors
        // (longjmp) never leave mlua's protected calls, which run inside `make`.
        Ok(()) => Ok(unsafe { psm::on_stack(base, size, || catch_unwind(AssertUnwindSafe(make))) }),
        Err(e) => Err(std::io::Error::from(e)),
    };
    // SAFETY: the whole mapping made above; nothing runs on it any more.
    let _ = unsafe { munmap(region, total.get()) };
    match ran? {
        Ok(value) => Ok(value),
        Err(panic) => resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closure_runs_on_a_stack_of_its_own_each_time() {
        let here = psm::stack_pointer() as usize;
        let places: Vec<usize> = (0..8)
            .map(|_| with_own_seed(|| psm::stack_pointer() as usize).unwrap())
            .collect();
        assert!(places.iter().all(|&p| p != here));
        assert!(places.iter().any(|&p| p != places[0]), "{places:x?}");
    }

    #[test]
    fn a_panic_comes_back_to_the_caller() {
        let caught = std::panic::catch_unwind(|| with_own_seed(|| panic!("inside")));
        assert!(caught.is_err());
    }
}
