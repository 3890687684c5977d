//! Files the commands write.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// [`umi_util::write_atomically`] (the whole new file or the old one, never half), its error
/// naming `path`.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    umi_util::write_atomically(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Creates `out` and records `settings` in its settings.json, or checks that the run already
/// there has the same settings (a rerun resumes it).
pub fn claim_out_dir<S: Serialize + DeserializeOwned + PartialEq>(
    out: &Path,
    settings: &S,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let settings_path = out.join("settings.json");
    if let Ok(text) = std::fs::read_to_string(&settings_path) {
        let previous: S = serde_json::from_str(&text)
            .with_context(|| format!("reading {}", settings_path.display()))?;
        if previous != *settings {
            bail!(
                "{} holds a run with other settings ({}); use another --out",
                out.display(),
                text.trim()
            );
        }
    } else {
        std::fs::write(&settings_path, serde_json::to_string_pretty(settings)?)?;
    }
    Ok(())
}
