//! A consumer's env file, opened so that nobody but its owner can divert
//! what keysentry writes into it.
//!
//! keysentry (often root) writes a live key there. A symlink, or a file or
//! directory that another user may change, would let that user send the key
//! to a file of their own, or have keysentry overwrite any file it can
//! write. So the directory is opened once (not through a symlink) and
//! everything after works relative to that descriptor: the file is opened
//! with `O_NOFOLLOW`, the directory and the file must belong to root or to
//! keysentry's own (effective) user and be writable by nobody else, and the
//! replacement is created with `O_EXCL` in that directory and renamed over
//! the file with `renameat`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{openat, renameat, unlinkat, AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;

/// Why an env file was not opened.
#[derive(Debug)]
pub enum OpenError {
    Io(std::io::Error),
    /// It is not a safe place for a key; the reason says what to change.
    Refused(String),
}

impl From<Errno> for OpenError {
    fn from(e: Errno) -> Self {
        OpenError::Io(e.into())
    }
}

/// An opened env file and the directory descriptor it is replaced through.
pub struct EnvFile {
    dir: File,
    name: OsString,
    uid: u32,
    gid: u32,
    mode: u32,
    pub text: String,
}

/// Who may own a consumer's file and its directory.
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// The reason `meta` (of `what`) is not a safe place, if it is not.
fn unsafe_because(what: &str, meta: &std::fs::Metadata) -> Option<String> {
    if !trusted_owner(meta.uid()) {
        return Some(format!(
            "{what} belongs to uid {}, neither root nor keysentry's user (uid {}); chown it to one of them",
            meta.uid(),
            rustix::process::geteuid().as_raw()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "{what} is writable by group or others (mode {mode:04o}); `chmod go-w` it"
        ));
    }
    None
}

/// Opens `path` for reading and a later [`EnvFile::replace`], or says why
/// it may not hold a key.
pub fn open(path: &Path) -> Result<EnvFile, OpenError> {
    let refused = |why: String| OpenError::Refused(why);
    let name = path
        .file_name()
        .ok_or_else(|| refused(format!("{} does not name a file", path.display())))?
        .to_os_string();
    let dir_path = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = match openat(CWD, dir_path, dir_flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        // Linux answers ENOTDIR for O_DIRECTORY | O_NOFOLLOW on a symlink.
        Err(Errno::LOOP | Errno::NOTDIR)
            if std::fs::symlink_metadata(dir_path).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            return Err(refused(format!(
                "its directory {} is a symbolic link; name the real path in the config",
                dir_path.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let dir_meta = dir.metadata().map_err(OpenError::Io)?;
    let dir_what = format!("its directory {}", dir_path.display());
    if let Some(why) = unsafe_because(&dir_what, &dir_meta) {
        return Err(refused(why));
    }
    let file_flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let mut file = match openat(&dir, &name, file_flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::LOOP) => {
            return Err(refused(format!(
                "{} is a symbolic link; name the real path in the config",
                path.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(refused(format!("{} is not a regular file", path.display())));
    }
    if let Some(why) = unsafe_because(&path.display().to_string(), &meta) {
        return Err(refused(why));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(OpenError::Io)?;
    Ok(EnvFile {
        dir,
        name,
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
        text,
    })
}

impl EnvFile {
    /// Replaces the file atomically with `data`: a new file created with
    /// `O_EXCL` next to it, owned like the old one, mode no wider than 0600,
    /// fsynced, then renamed over it.
    pub fn replace(&self, data: &[u8]) -> std::io::Result<()> {
        let mode = self.mode & 0o600;
        let tmp = format!(
            ".{}.keysentry-{}.tmp",
            self.name.to_string_lossy(),
            std::process::id()
        );
        // A temp file left by a killed run of this pid-reused process (only
        // the directory's trusted owner can have put anything there).
        let _ = unlinkat(&self.dir, &tmp, AtFlags::empty());
        let result = (|| {
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let mut f = File::from(openat(&self.dir, &tmp, flags, Mode::from_raw_mode(mode))?);
            // The umask may have narrowed the mode further; set exactly it.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            let created = f.metadata()?;
            if created.uid() != self.uid || created.gid() != self.gid {
                // The service (e.g. KMS running as its own user) must still
                // be able to read its file after keysentry replaced it.
                std::os::unix::fs::fchown(&f, Some(self.uid), Some(self.gid))?;
            }
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            renameat(&self.dir, &tmp, &self.dir, &self.name)?;
            let _ = self.dir.sync_all();
            Ok(())
        })();
        if result.is_err() {
            let _ = unlinkat(&self.dir, &tmp, AtFlags::empty());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &Path) -> String {
        match open(path) {
            Err(OpenError::Refused(why)) => why,
            Err(OpenError::Io(e)) => panic!("io error {e}"),
            Ok(_) => panic!("{} was accepted", path.display()),
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // mkfifo, not git
    fn symlinks_and_shared_places_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("kms");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = dir.join(".env");
        std::fs::write(&env, "K=v\n").unwrap();
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(open(&env).map(|f| f.text).ok().as_deref(), Some("K=v\n"));

        let link = dir.join("link.env");
        std::os::unix::fs::symlink(&env, &link).unwrap();
        assert!(refused(&link).contains("name the real path in the config"));
        let dir_link = root.path().join("kms-link");
        std::os::unix::fs::symlink(&dir, &dir_link).unwrap();
        assert!(refused(&dir_link.join(".env")).contains("symbolic link"));

        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(refused(&env).contains("mode 0664"));
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(refused(&env).contains("its directory"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&env, Some(54321), None).unwrap();
            assert!(refused(&env).contains("uid 54321"));
        }
        let fifo = dir.join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success()));
        assert!(refused(&fifo).contains("not a regular file"));
    }
}
