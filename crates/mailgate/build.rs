//! Build facts for the `mailgate_build_info` metric: the compiler's version (one
//! `rustc -V`; cargo reruns this only when the toolchain or this file changes). The git
//! commit is not looked up here (that would rebuild the crate at every commit): packaging
//! passes it as `MAILGATE_GIT_COMMIT`, read with `option_env!`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MAILGATE_RUSTC_VERSION={version}");
}
