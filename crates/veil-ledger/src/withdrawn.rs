//! Withdrawn items stay withdrawn: the tombstones of every release of a dataset, and the check
//! that refuses to put an item they name (by output or by source blake3) into a new release or a
//! pack. A takedown deletes the output file, but a later `veil redact` of the same input makes
//! it again, and an older release still lists it; neither may be published after the withdrawal.

use std::fs;
use std::path::Path;

use crate::release::{check_name, load_tombstones, ReleaseError, Tombstone, RELEASE_FILE};

/// The tombstones of every release of `dataset` under `root` (each release loaded and checked
/// as by [`crate::load_release`]); empty when the dataset has no release yet. A release that
/// cannot be loaded is an error: what it withdrew would otherwise be forgotten.
pub fn withdrawn_items(root: &Path, dataset: &str) -> Result<Vec<Tombstone>, ReleaseError> {
    check_name("dataset", dataset)?;
    let dir = root.join(dataset);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ReleaseError::Io { path: dir, source }),
    };
    let mut versions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ReleaseError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Releases are written under a temporary name (`.VERSION.partial-PID-NANOS`) and renamed
        // into place: a killed build leaves one behind, and only finished releases count.
        let temporary = name.starts_with('.') && name.contains(".partial-");
        if !temporary
            && check_name("version", &name).is_ok()
            && entry.path().join(RELEASE_FILE).is_file()
        {
            versions.push(name);
        }
    }
    versions.sort();
    let mut all = Vec::new();
    for v in versions {
        all.extend(load_tombstones(root, dataset, &v)?);
    }
    Ok(all)
}

/// Fails on the first of `items` (path, output blake3, source blake3) that a tombstone names,
/// by its output's blake3 or by its source's.
pub fn refuse_withdrawn<'a>(
    dataset: &str,
    items: impl IntoIterator<Item = (&'a str, Option<&'a str>, Option<&'a str>)>,
    tombstones: &[Tombstone],
) -> Result<(), ReleaseError> {
    if tombstones.is_empty() {
        return Ok(());
    }
    let by_output: std::collections::HashMap<&str, &Tombstone> =
        tombstones.iter().map(|t| (t.blake3.as_str(), t)).collect();
    let by_source: std::collections::HashMap<&str, &Tombstone> = tombstones
        .iter()
        .filter_map(|t| Some((t.source_blake3.as_deref()?, t)))
        .collect();
    for (path, output, source) in items {
        let hit = output
            .and_then(|h| by_output.get(h))
            .or_else(|| source.and_then(|h| by_source.get(h)));
        if let Some(t) = hit {
            return Err(ReleaseError::Withdrawn {
                path: path.to_string(),
                dataset: dataset.to_string(),
                removed_from: t.removed_from.clone(),
                request: t.request.clone(),
            });
        }
    }
    Ok(())
}
