//! Two things cargo cannot be told otherwise:
//! - Rebuild the executable when the default app changes: `app_dir.rs` embeds `../lua` with
//!   `include_dir!`, which cannot tell cargo which files it read (a directory listed here is
//!   scanned recursively for changes).
//! - Lay the executable's segments out on 2 MiB boundaries (x86-64 Linux), so the zygote's
//!   anonymous copy of its code (`worker/src/anon_text.rs`) is almost all huge pages, which a
//!   fork copies a few entries at a time instead of one per 4 KiB page.

fn main() {
    println!("cargo:rerun-if-changed=../lua");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && arch == "x86_64" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,max-page-size=0x200000,-z,separate-code");
    }
}
