//! Records the version of the libjpeg-turbo that turbojpeg-sys builds and links into
//! the binary, for `wsi-thumbnail --version`: that library has no call that reports its
//! own version, and a statically linked library's version is fixed when it is built.
//! Likewise the versions of hayro-jpeg2000 and of the CharLS charls-sys vendors, from
//! Cargo.lock.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TURBOJPEG_INCLUDE");
    let version = std::env::var("DEP_TURBOJPEG_INCLUDE")
        .ok()
        .and_then(|dirs| {
            dirs.split(',')
                .find_map(|dir| std::fs::read_to_string(Path::new(dir).join("jconfig.h")).ok())
        })
        .and_then(|header| {
            header.lines().find_map(|line| {
                line.strip_prefix("#define LIBJPEG_TURBO_VERSION ")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=WSI_LIBJPEG_TURBO_VERSION={version}");

    // hayro-jpeg2000 is a crate, CharLS is vendored by charls-sys (its version after
    // "+charls."): the versions are the ones Cargo.lock pins.
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let hayro = locked_version(&lock, "hayro-jpeg2000").unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WSI_HAYRO_JPEG2000_VERSION={hayro}");
    let charls = locked_version(&lock, "charls-sys")
        .and_then(|v| v.split_once("+charls.").map(|(_, c)| c.to_string()))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WSI_CHARLS_VERSION={charls}");
}

/// The version Cargo.lock gives the package `name`.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let at = lock.find(&format!("name = \"{name}\"\n"))?;
    let line = lock[at..].lines().nth(1)?;
    Some(
        line.strip_prefix("version = ")?
            .trim_matches('"')
            .to_string(),
    )
}
