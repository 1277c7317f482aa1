//! Rebuilds the executable when the default app changes: `app_dir.rs` embeds `../lua` with
//! `include_dir!`, which cannot tell cargo which files it read (a directory listed here is
//! scanned recursively for changes).

fn main() {
    println!("cargo:rerun-if-changed=../lua");
}
