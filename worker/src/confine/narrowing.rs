//! The filter a forked worker installs on top of the zygote's: it refuses what the zygote's
//! filter allows and the worker allowlist does not, so that both together allow exactly the
//! allowlist ([`super::seccomp`]).
//!
//! Why not install the allowlist itself, as an exec'd worker does: the kernel converts and
//! JIT-compiles every new filter and runs it once per call number the earlier filters allow,
//! and `seccompiler` spends five instructions on every call it names. The allowlist is
//! 304 instructions and took ≈ 140 µs of each worker's start (perf: JIT ≈ 47 µs, conversion
//! ≈ 26 µs, the cache of allowed calls ≈ 34 µs). This filter names only what the zygote's adds
//! (`SETUP_ONLY`) in one comparison each, with a short block per call allowed on a condition.
//!
//! It relies on the zygote's filter being on, which the kernel guarantees once installed (a
//! filter cannot be removed, and is inherited by every fork): [`super::seccomp::install`] uses
//! this one only in a process whose zygote installed its own. The unit tests run the three
//! programs on every call number and on the argument values each condition turns on, and
//! check that the zygote's and this one together decide exactly as the allowlist.

use seccompiler::{sock_filter, BpfProgram};

use super::seccomp::{conditional, Condition, SETUP_ONLY};

// The classic BPF opcodes used (linux/bpf_common.h).
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in `struct seccomp_data`: the call number, then the arguments, 8 bytes each.
const NR: u32 = 0;
fn half(arg: u8, high: bool) -> u32 {
    let low_first = cfg!(target_endian = "little");
    16 + 8 * u32::from(arg) + if high == low_first { 4 } else { 0 }
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Where a jump in a block goes.
#[derive(Clone, Copy)]
enum To {
    Next,
    Trap,
    Allow,
}

/// The checks of one conditional call: the call goes through when they pass.
fn block(condition: Condition) -> Vec<(u16, u32, To, To)> {
    match condition {
        Condition::Clear { arg, bits } => {
            let (low, high) = (bits as u32, (bits >> 32) as u32);
            let mut block = Vec::new();
            if high != 0 {
                block.push((LD_W_ABS, half(arg, true), To::Next, To::Next));
                block.push((JSET_K, high, To::Trap, To::Next));
            }
            block.push((LD_W_ABS, half(arg, false), To::Next, To::Next));
            block.push((JSET_K, low, To::Trap, To::Allow));
            block
        }
        Condition::Is { arg, value } => vec![
            (LD_W_ABS, half(arg, false), To::Next, To::Next),
            (JEQ_K, value as u32, To::Next, To::Trap),
            (LD_W_ABS, half(arg, true), To::Next, To::Next),
            (JEQ_K, (value >> 32) as u32, To::Allow, To::Trap),
        ],
    }
}

/// The narrowing filter for the process `pid`. `arch_check` is the allowlist's own opening
/// (the architecture test), which falls through to the next instruction on this architecture.
pub(super) fn program(pid: u32, arch_check: &[sock_filter]) -> BpfProgram {
    let conditional = conditional(pid);
    let refused: Vec<libc::c_long> = SETUP_ONLY
        .iter()
        .copied()
        .filter(|nr| !conditional.iter().any(|(c, _)| c == nr))
        .collect();
    let blocks: Vec<_> = conditional.iter().map(|&(_, c)| block(c)).collect();
    // Layout: arch check, load the number, one comparison per refused call, one per
    // conditional call, allow; the blocks; trap; allow.
    let dispatch = arch_check.len() + 1;
    let first_block = dispatch + refused.len() + conditional.len() + 1;
    let blocks_len: usize = blocks.iter().map(Vec::len).sum();
    let trap = first_block + blocks_len;
    let allow = trap + 1;
    let offset = |from: usize, to: usize| -> u8 {
        u8::try_from(to - from - 1).expect("the filter is short enough for 8-bit jumps")
    };
    let mut out: BpfProgram = arch_check.to_vec();
    out.push(stmt(LD_W_ABS, NR));
    for &nr in &refused {
        let at = out.len();
        out.push(sock_filter {
            code: JEQ_K,
            jt: offset(at, trap),
            jf: 0,
            k: nr as u32,
        });
    }
    let mut start = first_block;
    for ((nr, _), block) in conditional.iter().zip(&blocks) {
        let at = out.len();
        out.push(sock_filter {
            code: JEQ_K,
            jt: offset(at, start),
            jf: 0,
            k: *nr as u32,
        });
        start += block.len();
    }
    out.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    for block in &blocks {
        for &(code, k, on_true, on_false) in block {
            let at = out.len();
            let to = |t: To| match t {
                To::Next => 0,
                To::Trap => offset(at, trap),
                To::Allow => offset(at, allow),
            };
            out.push(sock_filter {
                code,
                jt: to(on_true),
                jf: to(on_false),
                k,
            });
        }
    }
    out.push(stmt(RET_K, libc::SECCOMP_RET_TRAP));
    out.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    out
}

#[cfg(test)]
mod tests {
    use super::super::seccomp::{program_for, zygote_program};
    use super::*;

    /// Runs a seccomp program (the opcodes `seccompiler` and this file emit) on a call.
    fn run(program: &[sock_filter], data: &[u8; 64]) -> u32 {
        let word = |k: u32| {
            let at = k as usize;
            u32::from_ne_bytes(data[at..at + 4].try_into().unwrap())
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = &program[pc];
            let class = u32::from(i.code) & 0x07;
            let op = u32::from(i.code) & 0xf0;
            pc += 1;
            match (class, op) {
                (libc::BPF_LD, _)
                    if u32::from(i.code) == (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) =>
                {
                    a = word(i.k)
                }
                (libc::BPF_ALU, libc::BPF_AND) => a &= i.k,
                (libc::BPF_RET, _) => return i.k,
                (libc::BPF_JMP, libc::BPF_JA) => pc += i.k as usize,
                (libc::BPF_JMP, _) => {
                    let taken = match op {
                        libc::BPF_JEQ => a == i.k,
                        libc::BPF_JGT => a > i.k,
                        libc::BPF_JGE => a >= i.k,
                        libc::BPF_JSET => a & i.k != 0,
                        _ => panic!("unexpected jump {:#x}", i.code),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                _ => panic!("unexpected instruction {:#x}", i.code),
            }
        }
    }

    /// What the kernel does with several filters: the most severe action wins.
    fn together(results: &[u32]) -> u32 {
        let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        *results.iter().min_by_key(|&&r| action(r)).unwrap()
    }

    fn data(arch: u32, nr: u32, arg0: u64, arg2: u64) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_ne_bytes());
        d[4..8].copy_from_slice(&arch.to_ne_bytes());
        d[16..24].copy_from_slice(&arg0.to_ne_bytes());
        d[32..40].copy_from_slice(&arg2.to_ne_bytes());
        d
    }

    #[test]
    fn the_zygotes_filter_and_this_one_decide_every_call_as_the_allowlist() {
        let pid = 4242u32;
        let allowlist = program_for(pid).unwrap();
        let zygote = zygote_program().unwrap();
        let narrowing = program(pid, &allowlist[..3]);
        assert!(
            narrowing.len() < allowlist.len() / 3,
            "{} instructions",
            narrowing.len()
        );
        let arch = allowlist[1].k;
        let p = u64::from(pid);
        let arg0 = [
            0,
            1,
            p,
            p + 1,
            p | 1 << 32,
            1 << 32,
            libc::PR_SET_NAME as u64,
            u64::MAX,
        ];
        let o = |f: i32| f as u64;
        let arg2 = [
            0,
            o(libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY),
            o(libc::O_WRONLY),
            o(libc::O_RDWR),
            3,
            o(libc::O_CREAT),
            o(libc::O_TRUNC),
            o(libc::O_APPEND),
            o(libc::O_TMPFILE | libc::O_RDWR),
            o(libc::PROT_READ | libc::PROT_WRITE),
            o(libc::PROT_READ | libc::PROT_EXEC),
            1 << 40,
            u64::MAX,
        ];
        let mut checked = 0;
        for arch in [arch, arch ^ 1, 0x4000_0003] {
            for nr in (0..600).chain([0x4000_0000, 0x4000_0002, 0x4000_0101, u32::MAX]) {
                for &a0 in &arg0 {
                    for &a2 in &arg2 {
                        let d = data(arch, nr, a0, a2);
                        let expected = run(&allowlist, &d);
                        let got = together(&[run(&zygote, &d), run(&narrowing, &d)]);
                        assert_eq!(
                            got, expected,
                            "arch {arch:#x} call {nr} arg0 {a0:#x} arg2 {a2:#x}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100_000);
    }

    #[test]
    fn the_interpreter_agrees_with_what_the_allowlist_is_for() {
        // A check on the checker: the allowlist allows reading and refuses fork and
        // opening for writing.
        let allowlist = program_for(7).unwrap();
        let arch = allowlist[1].k;
        let nr = |n: libc::c_long| n as u32;
        let allowed = |d| run(&allowlist, &d) == libc::SECCOMP_RET_ALLOW;
        assert!(allowed(data(arch, nr(libc::SYS_read), 0, 0)));
        assert!(allowed(data(
            arch,
            nr(libc::SYS_openat),
            0,
            libc::O_RDONLY as u64
        )));
        assert!(!allowed(data(
            arch,
            nr(libc::SYS_openat),
            0,
            libc::O_WRONLY as u64
        )));
        assert!(!allowed(data(arch, nr(libc::SYS_clone), 0, 0)));
        assert!(allowed(data(arch, nr(libc::SYS_kill), 7, 0)));
        assert!(!allowed(data(arch, nr(libc::SYS_kill), 8, 0)));
    }
}
