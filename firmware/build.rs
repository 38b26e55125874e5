//! Link options for `callboxd`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    // The box (aarch64 glibc): pack the ~16,000 relative relocations of the
    // position-independent daemon as DT_RELR (.rela.dyn shrinks by ~380 KiB;
    // the binary stays PIE). The binary then needs glibc >= 2.36 (Debian 12's
    // cross glibc, Buildroot's Bootlin toolchains; an older one refuses to
    // start it: GLIBC_ABI_DT_RELR not found). GNU ld packs aarch64 relocations
    // only from binutils 2.41 (Debian 12 has 2.40 and ignores the option with
    // a warning), so link with the toolchain's own rust-lld when it has one.
    if var("CARGO_CFG_TARGET_ARCH") == "aarch64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
    {
        if let Some(dir) = rust_lld_gcc_ld() {
            println!("cargo:rustc-link-arg-bin=callboxd=-B{}", dir.display());
            println!("cargo:rustc-link-arg-bin=callboxd=-fuse-ld=lld");
        }
        println!("cargo:rustc-link-arg-bin=callboxd=-Wl,-z,pack-relative-relocs");
    }
}

/// The toolchain's `gcc-ld` directory (an `ld.lld` that runs its rust-lld),
/// for the C compiler driver's `-B`; rustup toolchains have it.
fn rust_lld_gcc_ld() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC")?;
    let host = std::env::var("HOST").ok()?;
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let bin = PathBuf::from(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin");
    (bin.join("rust-lld").is_file() && bin.join("gcc-ld/ld.lld").is_file())
        .then(|| bin.join("gcc-ld"))
}
