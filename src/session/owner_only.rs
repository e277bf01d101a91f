//! Where the embedded store keeps its records (user ids, sids, locations, approval tokens): a
//! directory only the owner can enter (0700) and a file only the owner can read or write
//! (0600), whatever the process umask.

use std::path::Path;

/// Creates the store's directory (if missing) and file (if missing) owner-only, and tightens
/// an existing file to 0600. A directory that already exists is the operator's and is left as
/// it is.
pub(super) fn prepare(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        create_dir(dir).map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    create_file(path).map_err(|e| format!("cannot create session store {}: {e}", path.display()))
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // SECURITY: the mode above is masked by the umask; set it outright.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(unix)]
fn create_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Created 0600 before redb writes a byte (never briefly world-readable), and set outright
    // afterwards: the umask could only have narrowed it, an older file may be wider.
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(not(unix))]
fn create_file(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        let meta = std::fs::metadata(p).expect("the path was just created");
        meta.permissions().mode() & 0o777
    }

    #[test]
    fn other_local_users_cannot_read_the_session_store() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state/fluxgate/sessions.redb");
        prepare(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&tmp.path().join("state")), 0o700);
        // A file left world-readable by an older version is tightened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
