//! Files the commands write.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `text` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
