//! Walking the input tree: which files are images, which are other files, which links are skipped.

use std::path::{Path, PathBuf};

use crate::PipelineError;

/// Extensions treated as images (any case). GIF is included so that GIF files are reported as
/// failures (unsupported) rather than silently passed over as "other files".
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif"];

#[derive(Debug, Default)]
pub struct Walk {
    /// Image candidates, relative paths, sorted.
    pub images: Vec<PathBuf>,
    /// Files that are not images by extension, relative paths, sorted.
    pub others: Vec<PathBuf>,
    /// Symlinks (and anything else) that were not followed, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Lists `root` recursively. Symlinks to files inside `root` are taken as files; symlinks that
/// leave `root`, dangling links and links to directories are listed as skipped. Files under
/// `exclude` (the output directory, when it is a sibling path) are never listed.
pub fn walk(root: &Path) -> Result<Walk, PipelineError> {
    let canon_root = root
        .canonicalize()
        .map_err(|e| PipelineError::io(root, e))?;
    let mut w = Walk::default();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| PipelineError::Walk {
            path: root.to_path_buf(),
            reason: e.to_string(),
        })?;
        let path = entry.path();
        let rel = match path.strip_prefix(root) {
            Ok(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
            _ => continue,
        };
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        if ft.is_symlink() {
            match path.canonicalize() {
                Ok(target) if target.starts_with(&canon_root) && target.is_file() => {}
                Ok(target) if target.is_dir() => {
                    w.skipped
                        .push((rel, "symlink to a directory (not followed)".into()));
                    continue;
                }
                Ok(_) => {
                    w.skipped.push((
                        rel,
                        "symlink leaving the input directory (not followed)".into(),
                    ));
                    continue;
                }
                Err(_) => {
                    w.skipped.push((rel, "dangling symlink".into()));
                    continue;
                }
            }
        } else if !ft.is_file() {
            w.skipped.push((rel, "not a regular file".into()));
            continue;
        }
        if is_image_name(&rel) {
            w.images.push(rel);
        } else {
            w.others.push(rel);
        }
    }
    Ok(w)
}

/// Refuses an output directory equal to, inside, or containing the input directory.
pub fn check_dirs(input: &Path, output: &Path) -> Result<(), PipelineError> {
    let canon_in = input
        .canonicalize()
        .map_err(|e| PipelineError::io(input, e))?;
    if !canon_in.is_dir() {
        return Err(PipelineError::Usage(format!(
            "input {} is not a directory",
            input.display()
        )));
    }
    // The output may not exist yet: resolve its deepest existing ancestor.
    let mut existing = output.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(n)) => {
                rest.push(n.to_os_string());
                existing = if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                };
            }
            _ => break,
        }
    }
    let mut canon_out = existing
        .canonicalize()
        .map_err(|e| PipelineError::io(&existing, e))?;
    for n in rest.iter().rev() {
        canon_out.push(n);
    }
    if canon_out.starts_with(&canon_in) {
        return Err(PipelineError::Usage(format!(
            "output {} is inside input {}: veil never writes inside its input",
            output.display(),
            input.display()
        )));
    }
    if canon_in.starts_with(&canon_out) {
        return Err(PipelineError::Usage(format!(
            "input {} is inside output {}: outputs could overwrite inputs",
            input.display(),
            output.display()
        )));
    }
    Ok(())
}

/// A relative path as a `/`-separated string for records.
pub fn rel_string(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
