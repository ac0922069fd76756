//! Writing files so that neither a kill nor a link planted in veil's directories can leave a
//! half-written file under a final name or make veil write outside its tree. Shared by every crate
//! that writes veil's files (the pipeline's outputs and run summary, the records, releases, the
//! takedown ledger and its notices).
//!
//! * A temporary file is always a new file: whatever non-directory entry is already at its name (a
//!   stale temporary file, or a symbolic link someone planted there) is removed first, the entry
//!   itself and never what a link points to, and the file is then created with
//!   `O_CREAT | O_EXCL`, which fails on any existing entry, a link included (dangling or not), so
//!   a link created in between is refused rather than followed.
//! * It is fsynced, renamed over the final name (`rename(2)` replaces a link at the final name; it
//!   never writes through it), and the directory is fsynced, so the rename survives a power cut.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `path` as a new, empty regular file open for writing. A non-directory entry already at
/// `path` (a file or a symbolic link) is removed first without following it; a directory is left
/// alone and the creation fails (`AlreadyExists`). The creation itself refuses any entry that
/// appeared in between, so the file returned is never reached through a link.
pub fn create_fresh(path: &Path) -> io::Result<File> {
    match fs::symlink_metadata(path) {
        // `is_dir` is false for a link, whatever it points to: the link itself is removed.
        Ok(m) if !m.is_dir() => fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: a directory is in the way", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Fsyncs directory `dir` (the current directory for an empty path), so that entries created,
/// renamed or removed in it survive a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Writes `dest` atomically: `write` fills a fresh temporary file at `tmp` (see [`create_fresh`];
/// it must be in the same directory as `dest`), which is fsynced and renamed over `dest`; then the
/// directory is fsynced. A kill leaves the old `dest` (or none) or the complete new one, never a
/// partial file under the final name; on an error the temporary file is removed.
pub fn write_file_atomic(
    dest: &Path,
    tmp: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut f = create_fresh(tmp)?;
    let written = write(&mut f).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(tmp, dest)) {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(dest.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    #[test]
    fn an_exclusive_create_refuses_links_even_dangling_ones() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, b"victim").unwrap();
        symlink(&victim, t.path().join("live")).unwrap();
        symlink(t.path().join("nowhere"), t.path().join("dangling")).unwrap();
        for name in ["live", "dangling"] {
            let e = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(t.path().join(name))
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{name}");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert!(!t.path().join("nowhere").exists());
    }

    #[test]
    fn links_at_the_temporary_and_final_names_are_replaced_not_written_through() {
        let t = tempfile::tempdir().unwrap();
        let victims = t.path().join("victims");
        fs::create_dir(&victims).unwrap();
        fs::write(victims.join("tmp"), b"victim tmp").unwrap();
        fs::write(victims.join("dest"), b"victim dest").unwrap();
        let (dest, tmp) = (
            t.path().join("out.json"),
            t.path().join(".out.json.partial"),
        );
        symlink(victims.join("tmp"), &tmp).unwrap();
        symlink(victims.join("dest"), &dest).unwrap();
        write_file_atomic(&dest, &tmp, |f| f.write_all(b"new")).unwrap();
        assert_eq!(fs::read(victims.join("tmp")).unwrap(), b"victim tmp");
        assert_eq!(fs::read(victims.join("dest")).unwrap(), b"victim dest");
        assert!(fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert!(fs::symlink_metadata(&tmp).is_err(), "temporary file left");

        // A dangling link at the temporary name does not create its target either.
        symlink(t.path().join("created-through-link"), &tmp).unwrap();
        write_file_atomic(&dest, &tmp, |f| f.write_all(b"newer")).unwrap();
        assert!(!t.path().join("created-through-link").exists());
        assert_eq!(fs::read(&dest).unwrap(), b"newer");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary_one() {
        let t = tempfile::tempdir().unwrap();
        let (dest, tmp) = (t.path().join("a"), t.path().join(".a.partial"));
        fs::write(&dest, b"old").unwrap();
        let e = write_file_atomic(&dest, &tmp, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert!(fs::symlink_metadata(&tmp).is_err());
        // A directory at the temporary name is not removed: the write fails.
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("keep"), b"k").unwrap();
        let e = write_file_atomic(&dest, &tmp, |f| f.write_all(b"x")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert!(tmp.join("keep").is_file());
        assert_eq!(fs::read(&dest).unwrap(), b"old");
    }
}
