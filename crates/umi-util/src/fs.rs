//! Files replaced whole or not at all.

use std::io;
use std::path::{Path, PathBuf};

/// Writes `bytes` to a temporary file beside `path` (`<name>.partial-<pid>`), then renames it over
/// `path`: a reader, or a run interrupted mid-write, sees the old file or the new one, never half
/// of one. The temporary file is removed when the write or the rename fails.
///
/// # Errors
///
/// The I/O error of the write or the rename (the caller names the file in its message).
pub fn write_atomically(path: &Path, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    let tmp = partial_path(path);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp); // best effort: the error that matters is returned
    }
    result
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_partial_file() {
        let dir = std::env::temp_dir().join(format!("umi-util-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.json");
        write_atomically(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.json")]);
        // a folder that does not exist: an error, and nothing left behind
        assert!(write_atomically(&dir.join("missing/x.json"), "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
