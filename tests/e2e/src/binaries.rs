//! Where the service binaries are: `TESSERA_E2E_BIN_DIR`, or the cargo target dir's
//! `debug` folder (`CARGO_TARGET_DIR`, else the workspace's `target`).

use std::path::PathBuf;

/// Environment variable naming the directory holding the service binaries.
pub(crate) const BIN_DIR_ENV: &str = "TESSERA_E2E_BIN_DIR";

/// The directory the service binaries are taken from.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("debug")
}

/// The path of binary `name` (e.g. `tessera-identity`), if it has been built.
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    let path = bin_dir().join(name);
    path.is_file().then_some(path)
}

/// The path of binary `name`.
///
/// # Panics
/// When it has not been built, naming the command that builds it.
pub fn binary(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| {
        panic!(
            "{name} not found in {}: build it first with `cargo build -p {name}` \
             (or `just e2e`), or point {BIN_DIR_ENV} at the directory holding it",
            bin_dir().display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "build it first with `cargo build -p tessera-nonexistent`")]
    fn a_missing_binary_names_the_command_that_builds_it() {
        binary("tessera-nonexistent");
    }
}
