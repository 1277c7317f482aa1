//! The zygote's copy of the read-only segments of the executable and its shared libraries,
//! made before it forks, so forked workers start cheaply (ARCHITECTURE.md, "Processes").
//!
//! `fork` copies a process's page tables only where a mapping has anonymous pages; the
//! executable's code and read-only data are file mappings, so every forked worker used to fault
//! them in again, 16 pages at a time: about 35 faults per spare, about a tenth of a session's
//! creation CPU. Once the zygote holds those segments as anonymous memory (transparent huge
//! pages; each copy is padded with zeros to its next 2 MiB boundary where nothing else is
//! mapped, so its last part is a huge page too) the fork copies their entries, one for each
//! 2 MiB, and the worker takes no fault on them.
//!
//! The shared libraries (libc, ld.so, libm, libgcc_s) are copied for another reason: a file
//! page's reverse map lists every process on the machine that maps it, and a walk of it (page
//! reclaim, DAMON's access checks) visits all of them, holding a lock each fork needs. The
//! libraries' copies go into memfds of the zygote's own, mapped privately: their reverse maps
//! list only this zygote and its workers (at most `--zygote-forks` of them), and, being file
//! mappings, the fork copies none of their entries. As anonymous 4 KiB pages they were about
//! 700 entries for every fork to copy and every exit to drop; a worker now faults in what it
//! uses of them, 16 pages at a time (measured: 2–10 % less server CPU per session).
//!
//! Each executable segment is copied into a fresh anonymous mapping, given the segment's
//! protection and moved over the original with `mremap`; each library segment is written to a
//! memfd, mapped over the original with `MAP_FIXED`. Either replaces it in one step. The bytes
//! at every address are the same before and after, so code running from the segment (this
//! function's caller) goes on unaware. What it costs: the zygote holds a private copy (≈ 14 MiB
//! of the executable, ≈ 3 MiB of libraries, shared with every worker it forks), and profilers
//! no longer name the zygote's and workers' functions (their code is no longer the file they
//! know): [`ENV_FILE_TEXT`] keeps the file mappings.

use std::ffi::c_void;
use std::io;
use std::ptr::NonNull;

use nix::sys::mman::{madvise, mmap_anonymous, mprotect, mremap, munmap};
use nix::sys::mman::{MRemapFlags, MapFlags, MmapAdvise, ProtFlags};
use protocol::launch::ENV_FILE_TEXT;

/// The transparent huge page size: a copy starts at the same offset within 2 MiB as the
/// segment, so each whole 2 MiB of it can be one huge page and stays one when moved.
const HUGE: usize = 2 * 1024 * 1024;

/// One read-only segment of the executable, as `/proc/self/maps` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    start: usize,
    end: usize,
    executable: bool,
    /// A shared library's (copied into a file of this zygote's own; see [`copy_to_memfd`]).
    library: bool,
}

/// Whether `path` names a shared library (`libc.so.6`, `ld-linux-x86-64.so.2`).
fn is_shared_library(path: &str) -> bool {
    path.starts_with('/')
        && path
            .rsplit('/')
            .next()
            .is_some_and(|name| name.ends_with(".so") || name.contains(".so."))
}

/// The read-only mappings (code, and constant data) of the executable and of the shared
/// libraries in `maps`, the text of `/proc/self/maps`; `exe` is the executable's path as the
/// kernel names it.
fn segments(maps: &str, exe: &str) -> Vec<Segment> {
    maps.lines()
        .filter_map(|line| {
            // range perms offset dev inode, then the path (padded; it may hold spaces).
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?.trim_start();
            let library = path != exe && is_shared_library(path);
            let ours = path == exe || library;
            if !ours || !perms.starts_with("r-") || !perms.ends_with('p') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Segment {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
                executable: perms.as_bytes().get(2) == Some(&b'x'),
                library,
            })
        })
        .collect()
}

/// Replaces the read-only file mappings of the executable (by anonymous copies) and of the
/// shared libraries (by memfd copies). Call it while the
/// process has one thread (the zygote, before it serves): another thread running code from a
/// segment while it is replaced would still see the same bytes, but nothing else may map or
/// unmap meanwhile. Returns how many bytes were moved; an error leaves the segment that failed,
/// and those after it, as they were.
pub fn copy_code_for_forks() -> io::Result<usize> {
    if std::env::var_os(ENV_FILE_TEXT).is_some() {
        return Ok(0);
    }
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut moved = 0;
    for segment in segments(&maps, &exe.to_string_lossy()) {
        if segment.library {
            copy_to_memfd(segment)?;
        } else {
            copy_over(segment, padded_end(&maps, segment))?;
        }
        moved += segment.end - segment.start;
    }
    Ok(moved)
}

/// A shared library's segment, copied into a memfd of this zygote's and mapped privately over
/// the original. `fork` copies no page-table entries of a file mapping without anonymous pages
/// (a worker faults them in, 16 at a time, from the memfd's pages), and the memfd's reverse map
/// lists only this zygote and its workers, as an anonymous copy's would. Its 4 KiB pages would
/// otherwise be about 700 entries for every fork to copy and every exit to drop.
fn copy_to_memfd(segment: Segment) -> io::Result<()> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let len = segment.end - segment.start;
    let Some(size) = std::num::NonZeroUsize::new(len) else {
        return Ok(());
    };
    let file = memfd_create(c"lb-library", MFdFlags::MFD_CLOEXEC)?;
    // SAFETY: the segment is a readable mapping `len` bytes long (from /proc/self/maps; nothing
    // unmaps it meanwhile: the caller has one thread).
    let bytes = unsafe { std::slice::from_raw_parts(segment.start as *const u8, len) };
    let mut written = 0;
    while written < len {
        match nix::unistd::write(&file, &bytes[written..])? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => written += n,
        }
    }
    let protection = if segment.executable {
        ProtFlags::PROT_READ | ProtFlags::PROT_EXEC
    } else {
        ProtFlags::PROT_READ
    };
    // SAFETY: replaces the segment with a private, read-only mapping of the same bytes with
    // the same protection, in one call (MAP_FIXED): no address of it is ever unmapped or
    // different, so code and constants read from it by this thread (the only one) are
    // unchanged. The mapping keeps the memfd alive once `file` is closed.
    unsafe {
        nix::sys::mman::mmap(
            std::num::NonZeroUsize::new(segment.start),
            size,
            protection,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED,
            &file,
            0,
        )
    }?;
    Ok(())
}

/// Where the executable's copy of `segment` may end: the next 2 MiB boundary when the segment
/// starts on one and nothing is mapped up to that boundary (the executable is linked with
/// 2 MiB-aligned segments, so the gap after each is free), else the segment's own end. Padded
/// with zeros to the boundary, the copy's last part is a huge page too: one page-table entry
/// for a fork to copy instead of up to 511 (about 190 in all for our three segments).
fn padded_end(maps: &str, segment: Segment) -> usize {
    let boundary = segment.end.next_multiple_of(HUGE);
    let next_start = maps
        .lines()
        .filter_map(|line| {
            let (start, _) = line.split_once(' ')?.0.split_once('-')?;
            usize::from_str_radix(start, 16).ok()
        })
        .filter(|&start| start >= segment.end)
        .min()
        .unwrap_or(usize::MAX);
    if segment.start.is_multiple_of(HUGE) && boundary <= next_start {
        boundary
    } else {
        segment.end
    }
}

/// Copies `segment` into anonymous memory reaching up to `end` (at least the segment's end;
/// the rest zeros) and moves the copy over it.
fn copy_over(segment: Segment, end: usize) -> io::Result<()> {
    let len = end.max(segment.end) - segment.start;
    let (Some(size), Some(reserved)) = (
        std::num::NonZeroUsize::new(len),
        std::num::NonZeroUsize::new(len + HUGE),
    ) else {
        return Ok(());
    };
    // SAFETY: a new private anonymous mapping at an address the kernel chooses; nothing else
    // refers to it.
    let area = unsafe {
        mmap_anonymous(
            None,
            reserved,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
        )
    }?;
    let base = area.as_ptr() as usize;
    // The first address in the area at the segment's offset within 2 MiB.
    let copy = base + (segment.start.wrapping_sub(base) % HUGE);
    let result = fill_and_move(segment, copy, size);
    // What is left of the area around the copy (all of it, if the move failed).
    let unmap = |from: usize, to: usize| {
        if let Some(at) = NonNull::new(from as *mut c_void).filter(|_| to > from) {
            // SAFETY: part of the area mapped above that holds nothing anyone uses.
            let _ = unsafe { munmap(at, to - from) };
        }
    };
    match result {
        Ok(()) => {
            unmap(base, copy);
            unmap(copy + len, base + reserved.get());
        }
        Err(_) => unmap(base, base + reserved.get()),
    }
    result
}

fn fill_and_move(segment: Segment, copy: usize, size: std::num::NonZeroUsize) -> io::Result<()> {
    let len = size.get();
    let at = NonNull::new(copy as *mut c_void).ok_or(io::ErrorKind::InvalidInput)?;
    // Huge pages are a bonus: without them the copy is still anonymous.
    // SAFETY: advice on part of the area mapped in `copy_over`, which nothing else uses.
    let _ = unsafe { madvise(at, len, MmapAdvise::MADV_HUGEPAGE) };
    let bytes = segment.end - segment.start;
    // SAFETY: the source is a readable mapping of the executable `bytes` long (from
    // /proc/self/maps, and nothing unmaps it meanwhile: the caller has one thread); the
    // destination is `len` ≥ `bytes` writable bytes of the area, which does not overlap it
    // (what follows the copied bytes stays zero).
    unsafe { std::ptr::copy_nonoverlapping(segment.start as *const u8, copy as *mut u8, bytes) };
    let protection = if segment.executable {
        ProtFlags::PROT_READ | ProtFlags::PROT_EXEC
    } else {
        ProtFlags::PROT_READ
    };
    // SAFETY: part of the area, holding the segment's bytes.
    unsafe { mprotect(at, len, protection) }?;
    let target = segment.start as *mut c_void;
    // SAFETY: replaces the segment with a mapping holding the same bytes with the same
    // protection, in one call: no address of the segment is ever unmapped or different, so
    // code and constants read from it (by this thread, the only one) are unchanged. Past the
    // segment's end up to `len` nothing was mapped (`padded_end`), so nothing is replaced there.
    unsafe {
        mremap(
            at,
            len,
            len,
            MRemapFlags::MREMAP_MAYMOVE | MRemapFlags::MREMAP_FIXED,
            NonNull::new(target),
        )
    }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_only_segments_of_the_executable_and_libraries_are_found_and_nothing_else() {
        let maps = "\
55d0c0000000-55d0c024e000 r--p 00000000 fd:01 123 /usr/bin/luabroker
55d0c024e000-55d0c087c000 r-xp 0024d000 fd:01 123 /usr/bin/luabroker
55d0c087d000-55d0c08c1000 r--p 0087b000 fd:01 123 /usr/bin/luabroker
55d0c08c1000-55d0c08c4000 rw-p 008be000 fd:01 123 /usr/bin/luabroker
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000028000 r--p 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000028000-7f00001bd000 r-xp 00028000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000301000 r--s 00000000 fd:01 123 /usr/bin/luabroker
7f0000310000-7f0000311000 r--p 00000000 fd:01 321 /usr/lib/locale/locale-archive
7f0000400000-7f0000401000 r-xp 00000000 fd:01 789                        /opt/my apps/luabroker
";
        let found = segments(maps, "/usr/bin/luabroker");
        assert_eq!(
            found,
            vec![
                Segment {
                    start: 0x55d0c0000000,
                    end: 0x55d0c024e000,
                    executable: false,
                    library: false
                },
                Segment {
                    start: 0x55d0c024e000,
                    end: 0x55d0c087c000,
                    executable: true,
                    library: false
                },
                Segment {
                    start: 0x55d0c087d000,
                    end: 0x55d0c08c1000,
                    executable: false,
                    library: false
                },
                Segment {
                    start: 0x7f0000000000,
                    end: 0x7f0000028000,
                    executable: false,
                    library: true
                },
                Segment {
                    start: 0x7f0000028000,
                    end: 0x7f00001bd000,
                    executable: true,
                    library: true
                },
            ]
        );
        let spaced = Segment {
            start: 0x7f0000400000,
            end: 0x7f0000401000,
            executable: true,
            library: false,
        };
        let found = segments(maps, "/opt/my apps/luabroker");
        assert_eq!(found.len(), 3, "{found:?}"); // libc's two, and the spaced executable's
        assert_eq!(found[2], spaced);
    }

    #[test]
    fn a_copy_is_padded_to_its_huge_page_only_where_nothing_else_is_mapped() {
        let maps = "\
200000-252000 r--p 00000000 fd:01 123 /usr/bin/luabroker
600000-62a000 r-xp 00400000 fd:01 123 /usr/bin/luabroker
a00000-a44000 r--p 00800000 fd:01 123 /usr/bin/luabroker
a80000-a83000 rw-p 00843000 fd:01 123 /usr/bin/luabroker
c01000-c02000 r--p 00000000 fd:01 123 /usr/bin/luabroker
";
        let segment = |start, end| Segment {
            start,
            end,
            executable: false,
            library: false,
        };
        // Free up to the next 2 MiB boundary: padded to it.
        assert_eq!(padded_end(maps, segment(0x200000, 0x252000)), 0x400000);
        assert_eq!(padded_end(maps, segment(0x600000, 0x62a000)), 0x800000);
        // Something mapped before the boundary: the segment's own end.
        assert_eq!(padded_end(maps, segment(0xa00000, 0xa44000)), 0xa44000);
        // Not starting on a boundary: its own end.
        assert_eq!(padded_end(maps, segment(0xc01000, 0xc02000)), 0xc02000);
    }
}
