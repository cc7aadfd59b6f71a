//! Helpers shared by the storage integration tests.

use std::path::PathBuf;

/// A fresh directory on a real file system: under `RILL_TEST_DIR` when set (a device
/// with O_DIRECT), else the system temp directory. Kept after the test for a look.
pub fn test_dir() -> PathBuf {
    let base = std::env::var_os("RILL_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap().keep()
}
