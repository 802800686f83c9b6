//! Finds the shared libmemmamba with the standard library only: the
//! directory comes from `MEMMAMBA_LIB_DIR` or, failing that, from
//! `pkg-config --libs-only-L memmamba` (honouring `PKG_CONFIG` and
//! `PKG_CONFIG_PATH`); with neither, the linker's default paths are
//! searched. At run time the loader must find the library too (an installed
//! prefix in its paths, or `LD_LIBRARY_PATH`).
use std::env;
use std::process::Command;

fn pkg_config_lib_dirs() -> Vec<String> {
    let exe = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let out = match Command::new(exe)
        .args(["--libs-only-L", "memmamba"])
        .output()
    {
        Ok(out) if out.status.success() => out,
        _ => return Vec::new(),
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|flag| flag.strip_prefix("-L"))
        .map(str::to_string)
        .collect()
}

fn main() {
    for var in ["MEMMAMBA_LIB_DIR", "PKG_CONFIG", "PKG_CONFIG_PATH"] {
        println!("cargo:rerun-if-env-changed={}", var);
    }
    println!("cargo:rerun-if-changed=build.rs");

    let dirs = match env::var("MEMMAMBA_LIB_DIR") {
        Ok(dir) if !dir.is_empty() => vec![dir],
        _ => pkg_config_lib_dirs(),
    };
    for dir in &dirs {
        println!("cargo:rustc-link-search=native={}", dir);
    }
    // Dependent crates' build scripts see it as DEP_MEMMAMBA_LIB_DIR.
    if let Some(dir) = dirs.first() {
        println!("cargo:lib_dir={}", dir);
    }
    println!("cargo:rustc-link-lib=dylib=memmamba");
}
