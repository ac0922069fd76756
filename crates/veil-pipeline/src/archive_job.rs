//! One dataset archive (a WebDataset shard, a tar.gz, a zip) through the run's stages: its
//! members are read in order ([`crate::members`]); each image member goes to the same detect and
//! finish stages as a loose file, with the same policy, validation and record; every other member
//! is written back unchanged; a writer puts the members back in their order into an archive of
//! the same format under a temporary name, renamed over the output once complete.
//!
//! Records: one per image member, `path` = `ARCHIVE#MEMBER` with `archive` = the archive's path,
//! and one for the archive itself (its source and output blake3, `format` = the archive format).
//! They are handed on only once the archive is complete, so no record ever names an output that
//! is not there.
//!
//! Fail closed: an image member that cannot be redacted is left out of the output archive and
//! recorded as failed. A member that is itself an archive is left out too (veil reads one level
//! of archives) and recorded as failed, and so is any other member that hides a zip behind other
//! bytes or carries a picture inside it ([`crate::embedded`]: a pickled or base64 JPEG in a
//! sidecar). An archive that cannot be read to its end (truncated,
//! corrupt, a hostile member) or written fails as a whole: no output file, every member record
//! failed with the reason.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};

use veil_core::{FailureStage, ImageStatus};
use veil_ledger::{ProvenanceRecord, StageTimes};

use crate::members::{self, ArchiveError, Caps, Format, Member};
use crate::process::{self, Admit, ImageSettings, MemberResult, Prepared};
use crate::walk::rel_string;

/// Most members read ahead of the one being written (each holds its bytes until written).
const WINDOW: usize = 64;
/// Most bytes of unchanged members read ahead of the writer (a larger member still goes, alone).
const READ_AHEAD_BYTES: u64 = 64 << 20;

/// Bytes of unchanged members read but not yet written, shared by the reader and the writer,
/// and whether the writer is gone (then the reader never waits: its next send fails instead).
#[derive(Default)]
struct ReadAhead {
    state: std::sync::Mutex<(u64, bool)>,
    room: std::sync::Condvar,
}

impl ReadAhead {
    /// Waits until `n` more bytes fit (or nothing is ahead, or the writer is gone), then counts
    /// them.
    fn reserve(&self, n: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !st.1 && st.0 > 0 && st.0 + n > READ_AHEAD_BYTES {
            st = self.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.0 += n;
    }

    fn release(&self, n: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = st.0.saturating_sub(n);
        self.room.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.room.notify_all();
    }
}

/// Marks the writer gone when its thread ends, however it ends (a panic included).
struct WriterGone<'a>(&'a ReadAhead);

impl Drop for WriterGone<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Starts an image member (or table row) through the stages: prepared and sent to the detect
/// stage, its result to come on the returned receiver; or concluded at once (`Err`).
pub(crate) fn start_member(
    bytes: Vec<u8>,
    path: &str,
    settings: &ImageSettings,
    admit: Admit<'_>,
    to_detect: &SyncSender<Prepared>,
    output: &Path,
) -> Result<Receiver<MemberResult>, Box<MemberResult>> {
    let (tx, rx) = channel();
    let item = process::prepare_member(bytes, path, settings, Some(admit), tx)?;
    if let Err(back) = to_detect.send(item) {
        // Only when every detect thread is gone: its failed result goes to `rx`.
        let _ = back.0.fail(
            output,
            settings,
            FailureStage::Detect,
            "internal: no detector running",
        );
    }
    Ok(rx)
}

/// An archive (or table) a run processes member by member (row by row).
#[derive(Debug, Clone)]
pub struct ArchiveJob {
    /// Path relative to the input root.
    pub rel: PathBuf,
    pub kind: JobKind,
}

/// What is inside: members of an archive, or rows of a Parquet table.
#[derive(Debug, Clone, Copy)]
pub enum JobKind {
    Archive(Format),
    Table(crate::parquet_job::ImageColumn),
}

impl JobKind {
    /// The record's `format`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Archive(f) => f.as_str(),
            JobKind::Table(_) => "parquet",
        }
    }
}

enum Entry {
    /// Written back as it is.
    Plain(Box<Member>),
    /// An image member on its way through the stages.
    Image(Box<Member>, Receiver<MemberResult>),
    /// A member concluded already (failed): left out.
    Concluded(Box<MemberResult>),
}

/// Runs one archive; `done` gets every record (members first, then the archive's) once the
/// archive is complete or has failed.
pub fn run_archive(
    job: &ArchiveJob,
    input: &Path,
    output: &Path,
    settings: &ImageSettings,
    to_detect: &SyncSender<Prepared>,
    admit: Admit<'_>,
    done: &(dyn Fn(ProvenanceRecord, StageTimes) + Sync),
) {
    let rel_str = rel_string(&job.rel);
    let src = input.join(&job.rel);
    let source =
        hash_file(&src).map(|h| (h, std::fs::metadata(&src).map(|m| m.len()).unwrap_or(0)));
    let outcome = match &source {
        Err(e) => Err((FailureStage::Read, format!("unreadable ({e})"), Vec::new())),
        Ok(_) => rewrite(job, &rel_str, &src, output, settings, to_detect, admit),
    };
    let (result, members) = match outcome {
        Ok((out, members)) => (Ok(out), members),
        Err((stage, why, members)) => (Err((stage, why)), members),
    };
    let mut times = StageTimes::default();
    for mut m in members {
        times.add(&m.times);
        if let Err((_, why)) = &result {
            if m.record.status != ImageStatus::Failed {
                m.record.status = ImageStatus::Failed;
                m.record.output_blake3 = None;
                m.record.output_size = None;
                m.record.output_phash = None;
                m.record.error_stage = Some(FailureStage::Write);
                m.record.error = Some(format!("its archive failed as a whole: {why}"));
            }
        }
        done(m.record, m.times);
    }
    let record =
        process::archive_record(&rel_str, settings, job.kind.as_str(), source.ok(), result);
    done(record, StageTimes::default());
}

type Rewritten = ((String, u64), Vec<MemberResult>);
type Failed = (FailureStage, String, Vec<MemberResult>);

fn rewrite(
    job: &ArchiveJob,
    rel_str: &str,
    src: &Path,
    output: &Path,
    settings: &ImageSettings,
    to_detect: &SyncSender<Prepared>,
    admit: Admit<'_>,
) -> Result<Rewritten, Failed> {
    let dir = process::output_dir(output, &job.rel, true)
        .map_err(|e| (FailureStage::Write, e, Vec::new()))?;
    let name = job.rel.file_name().unwrap_or_default().to_os_string();
    let dest = dir.join(&name);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(&name);
    tmp_name.push(crate::resume::PARTIAL_SUFFIX);
    let tmp = dir.join(tmp_name);
    // A partial file of a killed run, and an earlier output that this run may not reproduce.
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(&dest);
    let written = match job.kind {
        JobKind::Archive(format) => write_archive(
            format, rel_str, src, &tmp, output, settings, to_detect, admit,
        ),
        JobKind::Table(column) => crate::parquet_job::rewrite_table(
            rel_str, src, &tmp, column, settings, to_detect, admit, output,
        ),
    };
    let results = match written {
        Ok(results) => results
            .into_iter()
            .map(|r| with_archive(r, rel_str))
            .collect::<Vec<_>>(),
        Err((stage, e, results)) => {
            let _ = std::fs::remove_file(&tmp);
            let results = results
                .into_iter()
                .map(|r| with_archive(r, rel_str))
                .collect();
            return Err((stage, e, results));
        }
    };
    let hashed = hash_file(&tmp).map_err(|e| e.to_string()).and_then(|h| {
        let size = std::fs::metadata(&tmp).map_err(|e| e.to_string())?.len();
        std::fs::rename(&tmp, &dest).map_err(|e| e.to_string())?;
        Ok((h, size))
    });
    match hashed {
        Ok(out) => {
            let _ = std::fs::File::open(&dir).and_then(|d| d.sync_all());
            Ok((out, results))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err((FailureStage::Write, e, results))
        }
    }
}

/// Writes the redacted archive to `tmp`, members in order; returns the member results.
#[allow(clippy::too_many_arguments)]
fn write_archive(
    format: Format,
    rel_str: &str,
    src: &Path,
    tmp: &Path,
    output: &Path,
    settings: &ImageSettings,
    to_detect: &SyncSender<Prepared>,
    admit: Admit<'_>,
) -> Result<Vec<MemberResult>, Failed> {
    let writer = members::create_writer(tmp, src, format)
        .map_err(|e| (FailureStage::Write, e.to_string(), Vec::new()))?;
    let (etx, erx) = sync_channel::<Entry>(WINDOW);
    let ahead = ReadAhead::default();
    let ahead = &ahead;
    let (read, (results, written)) = std::thread::scope(|s| {
        let writing = s.spawn(move || {
            let _gone = WriterGone(ahead);
            write_entries(writer, erx, settings, rel_str, ahead)
        });
        let read = members::read_members(src, format, Caps::default(), &mut |mut m| {
            let entry = if m.is_dir {
                Entry::Plain(Box::new(m))
            } else if crate::archives::looks_like_image(&m.data) {
                let member_path = format!("{rel_str}#{}", m.name);
                let bytes = std::mem::take(&mut m.data);
                match start_member(bytes, &member_path, settings, admit, to_detect, output) {
                    Err(res) => Entry::Concluded(Box::new(with_archive(*res, rel_str))),
                    Ok(rx) => Entry::Image(Box::new(m), rx),
                }
            } else if crate::archives::sniff(&m.data).is_some() {
                let member_path = format!("{rel_str}#{}", m.name);
                Entry::Concluded(Box::new(with_archive(
                    process::member_failed(
                        &member_path,
                        settings,
                        FailureStage::Decode,
                        "an archive inside an archive: veil reads one level of archives, so it \
                         was left out; unpack it into the input and run again",
                    ),
                    rel_str,
                )))
            } else if let Some(why) = crate::archives::picture_not_redacted(&m.name, &m.data) {
                let member_path = format!("{rel_str}#{}", m.name);
                Entry::Concluded(Box::new(with_archive(
                    process::member_failed(&member_path, settings, FailureStage::Decode, &why),
                    rel_str,
                )))
            } else if let Some(why) = hidden_in_member(&m.data) {
                let member_path = format!("{rel_str}#{}", m.name);
                Entry::Concluded(Box::new(with_archive(
                    process::member_failed(&member_path, settings, FailureStage::Decode, &why),
                    rel_str,
                )))
            } else {
                Entry::Plain(Box::new(m))
            };
            if let Entry::Plain(m) = &entry {
                ahead.reserve(m.data.len() as u64);
            }
            etx.send(entry)
                .map_err(|_| ArchiveError::Write("the archive writer stopped".into()))
        });
        drop(etx);
        let written = writing
            .join()
            .unwrap_or_else(|_| (Vec::new(), Err("the archive writer crashed".into())));
        (read, written)
    });
    if let Err(e) = read {
        return Err((FailureStage::Decode, e.to_string(), results));
    }
    if let Err(e) = written {
        return Err((FailureStage::Write, e, results));
    }
    Ok(results)
}

/// Why a member that is neither an image nor an archive at its start must not be written back
/// unchanged either: a zip archive behind other bytes (self-extracting), or a picture inside it
/// (a pickled or base64 JPEG, a `data:image/` URI, a pixel array; [`crate::embedded`]).
fn hidden_in_member(data: &[u8]) -> Option<String> {
    if crate::archives::zip_end_in(&data[data.len().saturating_sub(65_557)..]) {
        return Some(
            "a zip archive behind other bytes (self-extracting, or hidden): veil reads one level \
             of archives, so it was left out; unpack it into the input and run again"
                .into(),
        );
    }
    crate::embedded::find(data).map(|what| {
        format!(
            "it carries {what}, which veil would pass through unredacted, so it was left out: \
             store the picture as an image member of its own (JPEG, PNG or WebP) or remove it, \
             and run again"
        )
    })
}

fn with_archive(mut r: MemberResult, archive: &str) -> MemberResult {
    r.record.archive = Some(archive.to_string());
    r
}

/// The writer's side: members in order, waiting for each image's result.
fn write_entries(
    mut writer: Box<dyn members::MemberWriter>,
    entries: Receiver<Entry>,
    settings: &ImageSettings,
    archive: &str,
    ahead: &ReadAhead,
) -> (Vec<MemberResult>, Result<(), String>) {
    let mut results = Vec::new();
    let mut failed: Option<String> = None;
    for entry in entries {
        let put = match entry {
            Entry::Plain(m) => {
                let put = writer.put(&m, None);
                ahead.release(m.data.len() as u64);
                put
            }
            Entry::Concluded(r) => {
                results.push(*r);
                Ok(())
            }
            Entry::Image(m, rx) => {
                // A result that never comes (its stage is gone) fails the member.
                let r = rx.recv().unwrap_or_else(|_| {
                    process::member_failed(
                        &format!("{archive}#{}", m.name),
                        settings,
                        FailureStage::Redact,
                        "internal: the member's result never came back",
                    )
                });
                let put = match &r.output {
                    Some(bytes) => writer.put(&m, Some(bytes)),
                    None => Ok(()),
                };
                results.push(MemberResult { output: None, ..r });
                put
            }
        };
        if let Err(e) = put {
            failed.get_or_insert(e.to_string());
        }
    }
    let finished = match failed {
        Some(e) => Err(e),
        None => writer.finish().map_err(|e| e.to_string()),
    };
    (results, finished)
}

/// blake3 of a file, streamed.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize().to_hex().to_string())
}
