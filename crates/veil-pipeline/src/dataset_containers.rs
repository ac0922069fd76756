//! [`veil_ledger::Containers`] for the formats the pipeline reads and writes: tar (plain, gzip,
//! zstd) and zip archives through [`crate::members`], Parquet tables through
//! [`crate::parquet_job`]. Releases use it to check member items one by one; takedowns to
//! rewrite a shard or table without withdrawn members.

use std::collections::BTreeSet;
use std::path::Path;

use veil_ledger::{Containers, MemberDigest};

use crate::members::{self, Caps, Format};
use crate::parquet_job;

/// Dataset containers by content, with the archive caps of a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct DatasetContainers {
    pub caps: Caps,
}

enum Kind {
    Archive(Format),
    Table,
}

fn kind(file: &Path) -> Result<Kind, String> {
    if let Some(f) = Format::sniff(file).map_err(|e| format!("unreadable ({e})"))? {
        return Ok(Kind::Archive(f));
    }
    let head = crate::archives::file_kind(file).map_err(|e| format!("unreadable ({e})"))?;
    match head {
        Some(crate::archives::ArchiveKind::Parquet) => Ok(Kind::Table),
        _ => Err("not a tar or zip archive or a Parquet table".into()),
    }
}

/// The WebDataset key of a member name, as the release that drops a withdrawn sample counts it.
pub use veil_ledger::members::sample_key;

impl Containers for DatasetContainers {
    fn read_members(&self, file: &Path, f: &mut dyn FnMut(usize, &[u8])) -> Result<(), String> {
        let mut k = 0usize;
        match kind(file)? {
            Kind::Archive(format) => members::read_members(file, format, self.caps, &mut |m| {
                if !m.is_dir {
                    f(k, &m.data);
                    k += 1;
                }
                Ok(())
            })
            .map_err(|e| e.to_string()),
            Kind::Table => {
                let which = parquet_job::image_column_by_content(file)?;
                parquet_job::read_images_in(file, which, &mut |_, image| {
                    if let Some(b) = image {
                        f(k, &b);
                        k += 1;
                    }
                })
            }
        }
    }

    fn members(&self, file: &Path) -> Result<Vec<MemberDigest>, String> {
        let mut out = Vec::new();
        match kind(file)? {
            Kind::Archive(format) => {
                members::read_members(file, format, self.caps, &mut |m| {
                    if !m.is_dir {
                        out.push(MemberDigest {
                            name: Some(m.name.clone()),
                            size: m.data.len() as u64,
                            blake3: blake3::hash(&m.data).to_hex().to_string(),
                        });
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
            }
            Kind::Table => {
                let which = parquet_job::image_column_by_content(file)?;
                parquet_job::read_images_in(file, which, &mut |_, image| {
                    if let Some(b) = image {
                        out.push(MemberDigest {
                            name: None,
                            size: b.len() as u64,
                            blake3: blake3::hash(&b).to_hex().to_string(),
                        });
                    }
                })?;
            }
        }
        Ok(out)
    }

    fn rewrite_without(
        &self,
        src: &Path,
        dst: &Path,
        drop: &BTreeSet<usize>,
    ) -> Result<Vec<String>, String> {
        match kind(src)? {
            Kind::Table => {
                let which = parquet_job::image_column_by_content(src)?;
                parquet_job::filter_rows(src, dst, which, drop)
            }
            Kind::Archive(format) => {
                // First pass: the keys of the dropped members' samples.
                let mut keys = BTreeSet::new();
                let mut k = 0usize;
                members::read_members(src, format, self.caps, &mut |m| {
                    if !m.is_dir {
                        if drop.contains(&k) {
                            keys.insert(sample_key(&m.name).to_string());
                        }
                        k += 1;
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
                let mut writer =
                    members::create_writer(dst, src, format).map_err(|e| e.to_string())?;
                let mut dropped = Vec::new();
                members::read_members(src, format, self.caps, &mut |m| {
                    if !m.is_dir && keys.contains(sample_key(&m.name)) {
                        dropped.push(m.name);
                        return Ok(());
                    }
                    writer.put(&m, None)
                })
                .map_err(|e| e.to_string())?;
                writer.finish().map_err(|e| e.to_string())?;
                Ok(dropped)
            }
        }
    }
}
