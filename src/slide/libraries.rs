//! The slide libraries this binary runs, with their versions, for `--version` (contract
//! §2): an operator checking a CVE needs the versions that actually decode slides, not
//! the ones a package manifest names.
//!
//! OpenSlide and its OpenJPEG are shared libraries, asked at run time (OpenJPEG is
//! loaded as OpenSlide's dependency, so it is looked up among the loaded symbols);
//! libjpeg-turbo is built into the binary by turbojpeg-sys, and `build.rs` records its
//! version from the headers it was built with. The binary's own OpenJPEG (openjpeg-sys,
//! static, its symbols not exported, so OpenSlide keeps its own) answers `opj_version`
//! directly; hayro-jpeg2000's and CharLS's versions are the ones Cargo.lock pins.

use std::ffi::CStr;

/// One library: its name and version (`unknown` when it cannot say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    pub name: &'static str,
    pub version: String,
    /// What the service uses it for.
    pub role: &'static str,
}

/// The slide libraries, in the order `--version` prints them.
pub fn libraries() -> Vec<Library> {
    vec![
        Library {
            name: "OpenSlide",
            version: openslide_rs::OpenSlide::version().unwrap_or_else(|_| "unknown".into()),
            role: "vendor formats the direct paths do not read",
        },
        Library {
            name: "libjpeg-turbo",
            version: env!("WSI_LIBJPEG_TURBO_VERSION").to_string(),
            role: "built in: JPEG tiles and frames on the direct paths",
        },
        Library {
            name: "hayro-jpeg2000",
            version: env!("WSI_HAYRO_JPEG2000_VERSION").to_string(),
            role: "built in: JPEG 2000 frames on the direct paths",
        },
        Library {
            name: "CharLS",
            version: env!("WSI_CHARLS_VERSION").to_string(),
            role: "built in: JPEG-LS frames on the direct paths",
        },
        Library {
            name: "OpenJPEG",
            version: super::openjpeg::version(),
            role: "built in: HTJ2K frames on the direct paths",
        },
        Library {
            name: "OpenJPEG",
            version: openjpeg_version().unwrap_or_else(|| "unknown".into()),
            role: "JPEG 2000, inside OpenSlide",
        },
    ]
}

/// `--version` after the program's name: the service's version, then one line per
/// slide library.
pub fn version_text() -> String {
    let mut out = env!("CARGO_PKG_VERSION").to_string();
    for lib in libraries() {
        out.push_str(&format!("\n{} {} ({})", lib.name, lib.version, lib.role));
    }
    out
}

/// `opj_version()` of the loaded libopenjp2, if one is loaded.
fn openjpeg_version() -> Option<String> {
    // SAFETY: dlsym with a NUL-terminated name only looks the symbol up; when found, it
    // is libopenjp2's `const char* opj_version(void)`, which returns a static string.
    unsafe {
        let symbol = libc::dlsym(libc::RTLD_DEFAULT, c"opj_version".as_ptr());
        if symbol.is_null() {
            return None;
        }
        let opj_version: extern "C" fn() -> *const libc::c_char = std::mem::transmute(symbol);
        let text = opj_version();
        if text.is_null() {
            return None;
        }
        Some(CStr::from_ptr(text).to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn looks_like_a_version(v: &str) -> bool {
        let mut parts = v.split('.');
        parts.next().is_some_and(|p| p.parse::<u32>().is_ok())
            && parts.next().is_some_and(|p| p.parse::<u32>().is_ok())
    }

    #[test]
    fn every_slide_library_reports_a_version() {
        for lib in libraries() {
            assert!(
                looks_like_a_version(&lib.version),
                "{} reported {:?}",
                lib.name,
                lib.version
            );
        }
    }

    #[test]
    fn the_openslide_reported_is_the_one_loaded() {
        // pkg-config describes the library the binary was linked against.
        let Ok(out) = std::process::Command::new("pkg-config")
            .args(["--modversion", "openslide"])
            .output()
        else {
            return;
        };
        let linked = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let reported = libraries().remove(0);
        assert_eq!(reported.name, "OpenSlide");
        assert_eq!(reported.version, linked);
    }
}
