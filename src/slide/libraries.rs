//! The slide libraries this binary runs, with their versions, for `--version` (contract
//! §2): an operator checking a CVE needs the versions that actually decode slides, not
//! the ones a package manifest names.
//!
//! OpenSlide is openslide-bin's self-contained `libopenslide.so.1`, asked at run time
//! (`openslide_get_version`). The libraries it carries inside (OpenJPEG, libtiff,
//! libdicom, its own libjpeg-turbo) are linked into it and not exported, so they cannot be
//! asked: `build.rs` records the versions of the openslide-bin release it links, and they
//! are reported only while the loaded OpenSlide is that release's. libjpeg-turbo is built
//! into the binary by turbojpeg-sys, and `build.rs` records its version from the headers
//! it was built with. The binary's own OpenJPEG (openjpeg-sys, static, HTJ2K) answers
//! `opj_version` directly; hayro-jpeg2000's and CharLS's versions are the ones Cargo.lock
//! pins.

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
            version: openslide_version(),
            role: concat!(
                "openslide-bin ",
                env!("WSI_OPENSLIDE_BIN_VERSION"),
                ": vendor formats the direct paths do not read"
            ),
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
            version: bundled(env!("WSI_OPENSLIDE_BUNDLED_OPENJPEG")),
            role: "JPEG 2000, inside OpenSlide",
        },
        Library {
            name: "libtiff",
            version: bundled(env!("WSI_OPENSLIDE_BUNDLED_LIBTIFF")),
            role: "TIFF-based formats, inside OpenSlide",
        },
        Library {
            name: "libdicom",
            version: bundled(env!("WSI_OPENSLIDE_BUNDLED_LIBDICOM")),
            role: "DICOM, inside OpenSlide",
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

/// The loaded OpenSlide's own version.
fn openslide_version() -> String {
    openslide_rs::OpenSlide::version().unwrap_or_else(|_| "unknown".into())
}

/// A library inside OpenSlide: the version build.rs recorded for the openslide-bin
/// release, while the loaded OpenSlide is that release's (another one, loaded by an
/// operator's LD_LIBRARY_PATH, carries libraries this binary cannot name).
fn bundled(recorded: &str) -> String {
    if openslide_version() == env!("WSI_OPENSLIDE_BUNDLED_OPENSLIDE") {
        recorded.to_string()
    } else {
        "unknown".to_string()
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
    fn the_openslide_reported_is_the_openslide_bin_release_linked() {
        // pkg-config (through .cargo/config.toml) describes the library linked; the
        // RUNPATH makes it the one loaded, not a distribution's.
        let out = std::process::Command::new("pkg-config")
            .args(["--modversion", "openslide"])
            .output()
            .expect("pkg-config runs");
        let linked = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let reported = libraries().remove(0);
        assert_eq!(reported.name, "OpenSlide");
        assert_eq!(reported.version, linked);
        assert_eq!(reported.version, env!("WSI_OPENSLIDE_BUNDLED_OPENSLIDE"));
        assert!(reported.version.starts_with("4."), "{}", reported.version);
    }
}
