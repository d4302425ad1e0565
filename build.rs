//! Records the version of the libjpeg-turbo that turbojpeg-sys builds and links into
//! the binary, for `wsi-thumbnail --version`: that library has no call that reports its
//! own version, and a statically linked library's version is fixed when it is built.
//! Likewise the versions of hayro-jpeg2000 and of the CharLS charls-sys vendors, from
//! Cargo.lock. And it links the binaries against openslide-bin's self-contained
//! `libopenslide.so.1` (see `.cargo/config.toml`): its folder goes into the RUNPATH, and
//! the versions of the libraries bundled inside it are recorded for `--version`. It also
//! links the C++ runtime statically (see Cargo.toml's `link-cplusplus`).

use std::path::Path;

fn main() {
    openslide_bin();
    // CharLS's C++ runtime, linked in (Cargo.toml, `link-cplusplus`): after every object
    // and archive, so the archive resolves what CharLS needs, and only that.
    println!("cargo:rustc-link-arg=-Wl,--push-state,-Bstatic,-lstdc++,--pop-state");
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

/// The binary loads OpenSlide from the openslide-bin prefix (its RUNPATH), not from the
/// loader's default folders, where a distribution's older OpenSlide may sit.
fn openslide_bin() {
    println!("cargo:rerun-if-env-changed=WSI_OPENSLIDE_BIN_PREFIX");
    let Ok(prefix) = std::env::var("WSI_OPENSLIDE_BIN_PREFIX") else {
        panic!(
            "WSI_OPENSLIDE_BIN_PREFIX is unset: build from the repository, whose .cargo/config.toml sets it"
        );
    };
    let lib = Path::new(&prefix).join("lib");
    if !lib.join("libopenslide.so.1").is_file() {
        panic!(
            "OpenSlide (openslide-bin) is not installed in {prefix}: run scripts/install-openslide-bin.sh (scripts/setup.sh does)"
        );
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let bundled = Path::new(&prefix).join("share/bundled");
    println!("cargo:rerun-if-changed={}", bundled.display());
    let bundled = std::fs::read_to_string(bundled).unwrap_or_default();
    let version_of = |name: &str| {
        bundled
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or("unknown")
            .trim()
            .to_string()
    };
    for (name, var) in [
        ("openslide", "OPENSLIDE"),
        ("openjpeg", "OPENJPEG"),
        ("libjpeg-turbo", "LIBJPEG_TURBO"),
        ("tiff", "LIBTIFF"),
        ("libdicom", "LIBDICOM"),
    ] {
        println!(
            "cargo:rustc-env=WSI_OPENSLIDE_BUNDLED_{var}={}",
            version_of(name)
        );
    }
    let release = prefix.rsplit('/').next().unwrap_or("unknown");
    println!("cargo:rustc-env=WSI_OPENSLIDE_BIN_VERSION={release}");
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
