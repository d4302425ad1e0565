//! Records the version of the libjpeg-turbo that turbojpeg-sys builds and links into
//! the binary, for `wsi-thumbnail --version`: that library has no call that reports its
//! own version, and a statically linked library's version is fixed when it is built.

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
}
