//! Thumbnails of the outputs: one small JPEG per distinct output content, made in parallel from
//! the output files (never the sources), each checked against its record's blake3 and decoded
//! through a pixel cap.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::SystemTime;

use rayon::prelude::*;
use veil_core::{ImageStatus, ProgressEvent, ProgressSink};
use veil_ledger::ProvenanceRecord;

use crate::report::{safe_rel_path, ReportOptions};
use crate::ReportError;

/// Directory of the thumbnails inside the page directory.
pub(crate) const THUMBS_DIR: &str = "thumbs";

/// Per record (same indices as the records): the decoded dimensions when a thumbnail was made
/// now, and why the output cannot be shown. A record that did not fail and has no problem has
/// the thumbnail `thumbs/<first 32 hex of its output blake3>.jpg`.
pub(crate) struct Thumbs {
    pub dims: Vec<Option<[u32; 2]>>,
    pub problems: Vec<Option<String>>,
    pub made: u64,
    pub reused: u64,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// File name of the thumbnail of an output with this blake3.
fn thumb_name(b3: &str) -> String {
    format!("{}.jpg", &b3[..32])
}

/// Checks, without reading it, that a record's output is there as recorded; its mtime (for an
/// image inside a container, the container's).
fn stat_output(
    output: &Path,
    r: &ProvenanceRecord,
    containers: bool,
) -> Result<SystemTime, String> {
    let Some(b3) = r.output_blake3.as_deref() else {
        return Err("the record has no output blake3".into());
    };
    if !is_hex64(b3) {
        return Err("the record's output blake3 is malformed".into());
    }
    if let Some(archive) = &r.archive {
        if !containers {
            return Err(format!(
                "inside {archive}: this page was written without reading containers"
            ));
        }
    }
    let file = r.archive.as_deref().unwrap_or(&r.path);
    if !safe_rel_path(file) {
        return Err("the record's path is not a plain relative path; not read".into());
    }
    let path = output.join(file);
    let md = match std::fs::symlink_metadata(&path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("the output file is missing".into())
        }
        Err(e) => return Err(format!("cannot read the output: {e}")),
    };
    if md.file_type().is_symlink() {
        return Err("the output is a symbolic link; not followed".into());
    }
    if !md.is_file() {
        return Err("the output is not a regular file".into());
    }
    if let (Some(size), None) = (r.output_size, &r.archive) {
        if md.len() != size {
            return Err(format!(
                "the output has {} bytes, its record says {size}: it changed after the run",
                md.len()
            ));
        }
    }
    Ok(md.modified().unwrap_or(SystemTime::UNIX_EPOCH))
}

/// Decodes an output through the pixel cap (a decoder panic is an error, not a crash).
fn decode(bytes: &[u8], max_pixels: u64) -> Result<image::DynamicImage, String> {
    let inner = || -> Result<image::DynamicImage, String> {
        use image::ImageDecoder;
        let mut reader = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| e.to_string())?;
        if reader.format().is_none() {
            return Err("the output is not an image format the report can read".into());
        }
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(max_pixels.saturating_mul(8).max(64 << 20));
        reader.limits(limits);
        let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
        let (w, h) = decoder.dimensions();
        let pixels = u64::from(w) * u64::from(h);
        if pixels > max_pixels {
            return Err(format!(
                "the output is {w}x{h} = {pixels} pixels, above the limit of {max_pixels}; not decoded"
            ));
        }
        if pixels == 0 {
            return Err("the output has no pixels".into());
        }
        let orientation = decoder.orientation().map_err(|e| e.to_string())?;
        let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
        img.apply_orientation(orientation);
        Ok(img)
    };
    match catch_unwind(AssertUnwindSafe(inner)) {
        Ok(r) => r.map_err(|e| format!("cannot decode the output: {e}")),
        Err(_) => Err("the decoder crashed on the output".into()),
    }
}

/// Makes one thumbnail: reads the output, checks its blake3, decodes, shrinks, encodes, writes
/// (temporary name, rename). Returns the decoded dimensions.
fn make_one(src: &Path, b3: &str, dest: &Path, opts: &ReportOptions) -> Result<[u32; 2], String> {
    let bytes = std::fs::read(src).map_err(|e| format!("cannot read the output: {e}"))?;
    make_from_bytes(bytes, b3, dest, opts)
}

/// [`make_one`] from the output's bytes (an image read out of its container).
fn make_from_bytes(
    bytes: Vec<u8>,
    b3: &str,
    dest: &Path,
    opts: &ReportOptions,
) -> Result<[u32; 2], String> {
    let actual = blake3::hash(&bytes).to_hex();
    if actual.as_str() != b3 {
        return Err(format!(
            "the output is not the file its record describes (blake3 {actual}, recorded {b3})"
        ));
    }
    let img = decode(&bytes, opts.max_pixels)?;
    drop(bytes);
    let (w, h) = (img.width(), img.height());
    let side = opts.thumb_max_side.clamp(16, 4096);
    let small = if w.max(h) > side {
        img.thumbnail(side, side)
    } else {
        img
    };
    let rgb = small.to_rgb8();
    let mut out = Vec::with_capacity(16 << 10);
    jpeg_encoder::Encoder::new(&mut out, opts.thumb_quality.clamp(1, 100))
        .encode(
            rgb.as_raw(),
            rgb.width() as u16,
            rgb.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|e| format!("cannot encode the thumbnail: {e}"))?;
    crate::write_atomic(dest, &out, false).map_err(|e| e.to_string())?;
    Ok([w, h])
}

/// Makes (or reuses) the thumbnails of every output of `records` under `page_dir/thumbs`, and
/// removes thumbnails no record refers to any more.
pub(crate) fn make_all(
    output: &Path,
    page_dir: &Path,
    records: &[ProvenanceRecord],
    opts: &ReportOptions,
    progress: &dyn ProgressSink,
) -> Result<Thumbs, ReportError> {
    let dir = page_dir.join(THUMBS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| ReportError::io(&dir, e))?;
    let n = records.len();
    let mut t = Thumbs {
        dims: vec![None; n],
        problems: vec![None; n],
        made: 0,
        reused: 0,
    };

    let stats: Vec<Option<Result<SystemTime, String>>> = records
        .par_iter()
        .map(|r| {
            (r.status != ImageStatus::Failed)
                .then(|| stat_output(output, r, opts.containers.is_some()))
        })
        .collect();
    // Outputs with the same content share a thumbnail: group the good ones by blake3.
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in stats.iter().enumerate() {
        match s {
            Some(Ok(_)) => groups
                .entry(records[i].output_blake3.as_deref().unwrap_or_default())
                .or_default()
                .push(i),
            Some(Err(why)) => t.problems[i] = Some(why.clone()),
            None => {}
        }
    }
    let mut groups: Vec<(&str, Vec<usize>)> = groups.into_iter().collect();
    groups.sort_by_key(|(_, members)| members[0]);

    let mut jobs = Vec::new();
    for (gi, (b3, members)) in groups.iter().enumerate() {
        let dest = dir.join(thumb_name(b3));
        let newest = members
            .iter()
            .filter_map(|&i| stats[i].as_ref().and_then(|s| s.as_ref().ok()))
            .max()
            .copied()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let fresh = opts.reuse_thumbs
            && std::fs::symlink_metadata(&dest)
                .ok()
                .filter(|m| m.is_file() && m.len() > 0)
                .and_then(|m| m.modified().ok())
                .is_some_and(|m| m >= newest);
        if fresh {
            t.reused += 1;
        } else {
            jobs.push(gi);
        }
    }

    if !jobs.is_empty() {
        progress.event(ProgressEvent::Started {
            total: jobs.len() as u64,
        });
    }
    // Images inside containers: each container is read once, its images thumbnailed as they
    // come out of it.
    let (inside, files): (Vec<usize>, Vec<usize>) = jobs
        .iter()
        .partition(|&&gi| records[groups[gi].1[0]].archive.is_some());
    let mut by_container: HashMap<&str, Vec<usize>> = HashMap::new();
    for gi in inside {
        let rep = &records[groups[gi].1[0]];
        by_container
            .entry(rep.archive.as_deref().unwrap_or_default())
            .or_default()
            .push(gi);
    }
    let by_container: Vec<(&str, Vec<usize>)> = by_container.into_iter().collect();
    let mut made: Vec<(usize, Result<[u32; 2], String>)> = by_container
        .par_iter()
        .flat_map_iter(|(container, gis)| {
            let access = opts.containers.as_deref().expect("checked by stat_output");
            let paths: Vec<&str> = gis
                .iter()
                .map(|&gi| records[groups[gi].1[0]].path.as_str())
                .collect();
            let by_path: HashMap<&str, usize> =
                paths.iter().copied().zip(gis.iter().copied()).collect();
            // Every member item of the container, so that table rows pair in order.
            let all: Vec<&str> = records
                .iter()
                .filter(|r| {
                    r.archive.as_deref() == Some(*container) && r.status != ImageStatus::Failed
                })
                .map(|r| r.path.as_str())
                .collect();
            let mut out = Vec::new();
            let read = veil_ledger::member_bytes(
                &output.join(container),
                container,
                &all,
                access,
                &mut |path, bytes| {
                    if let Some(&gi) = by_path.get(path) {
                        let (b3, members) = &groups[gi];
                        let r =
                            make_from_bytes(bytes.to_vec(), b3, &dir.join(thumb_name(b3)), opts);
                        progress.event(ProgressEvent::ImageDone {
                            path: path.to_string(),
                            status: records[members[0]].status,
                            detections: records[members[0]].detections.len(),
                            error: r.as_ref().err().cloned(),
                        });
                        out.push((gi, r));
                    }
                },
            );
            let done: HashSet<usize> = out.iter().map(|(gi, _)| *gi).collect();
            for &gi in gis {
                if !done.contains(&gi) {
                    let why = match &read {
                        Err(e) => format!("cannot read {container}: {e}"),
                        Ok(_) => format!("not found inside {container}"),
                    };
                    out.push((gi, Err(why)));
                }
            }
            out
        })
        .collect();
    let made_files: Vec<(usize, Result<[u32; 2], String>)> = files
        .par_iter()
        .map(|&gi| {
            let (b3, members) = &groups[gi];
            let rep = &records[members[0]];
            let result = make_one(&output.join(&rep.path), b3, &dir.join(thumb_name(b3)), opts);
            progress.event(ProgressEvent::ImageDone {
                path: rep.path.clone(),
                status: rep.status,
                detections: rep.detections.len(),
                error: result.as_ref().err().cloned(),
            });
            (gi, result)
        })
        .collect();
    made.extend(made_files);
    let mut failed_groups = HashSet::new();
    for (gi, result) in made {
        let members = &groups[gi].1;
        match result {
            Ok(d) => {
                t.made += 1;
                for &i in members {
                    t.dims[i] = Some(d);
                }
            }
            Err(why) => {
                failed_groups.insert(gi);
                for &i in members {
                    t.problems[i] = Some(why.clone());
                }
            }
        }
    }
    let used: HashSet<String> = groups
        .iter()
        .enumerate()
        .filter(|(gi, _)| !failed_groups.contains(gi))
        .map(|(_, (b3, _))| thumb_name(b3))
        .collect();
    prune(&dir, &used);
    Ok(t)
}

/// Removes thumbnails (and temporary files) that no record uses; leaves anything else alone.
fn prune(dir: &Path, used: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name
            .strip_suffix(".jpg")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        let partial = name.starts_with('.') && name.ends_with(".veil-partial");
        if (ours && !used.contains(&name)) || partial {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
