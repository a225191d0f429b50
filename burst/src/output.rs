//! Where results go: report files checked before any work and written without harm, stdout
//! with its write errors reported instead of a panic, messages on stderr, and bounded reads.
//!
//! ## What an output path may be (the rules, checked by [`Output::prepare`])
//!
//! * `-`: stdout.
//! * A name that does not exist, in an existing directory: created by the atomic replace.
//! * A regular file: replaced atomically (temporary file in its directory, flushed, renamed
//!   over it, its permission bits kept). A file with no write permission bit (`chmod a-w`),
//!   or one `access(2)` says this user may not write, is refused: the check reads the mode
//!   bits itself, because for root `access` always succeeds.
//! * A symbolic link is followed (up to 40 links, dangling ones too): its *target* gets the
//!   atomic replace and the link is kept.
//! * A character device (`/dev/null`, `/dev/full`, a terminal) or a FIFO is written in place:
//!   opened for writing without create or truncate, written once at the end (never the
//!   per-run saves), never replaced. A FIFO's open waits for its reader, as a shell's `>`
//!   does. A write that fails (`/dev/full`: no space) is an output error (exit 1).
//! * A directory, a socket or a block device is refused.
//!
//! [`FileId`] identifies the file a path names (device and inode when it exists, the
//! canonical directory and name when it does not), so `--json`, `--svg`, `--resume` and the
//! inputs of `report` / `compare` naming one file are refused whatever the spelling.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::BurstError;

/// `text` with every control character but newline and tab shown as `\u{1b}`: names read
/// from files (a description's, a report's cells) cannot drive the terminal with ANSI
/// escapes or carriage returns. Every text written to stdout and stderr goes through it
/// (JSON needs nothing: serde escapes control characters in strings).
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Writes a line to stderr; a failing stderr is ignored (there is nowhere left to report it).
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", terminal_safe(line));
}

/// Writes `text` to stdout. A closed pipe (`| head`) ends the output quietly; any other
/// failure (`> /dev/full`) is an error naming stdout.
pub fn write_stdout(text: &str) -> Result<(), BurstError> {
    let text = terminal_safe(text);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(BurstError::Io {
            path: PathBuf::from("stdout"),
            reason: e.to_string(),
        }),
    }
}

/// Writes `text` to stderr (the table when stdout carries the JSON), errors ignored.
pub fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(terminal_safe(text).as_bytes());
}

/// Reads at most `limit` bytes of `path` as UTF-8 text; a longer file (or device, such as
/// `/dev/zero`) is an error of kind `FileTooLarge` naming the limit, found after reading
/// `limit + 1` bytes at most.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    let file = File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than the limit of {} MiB", limit >> 20),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

fn io_error(path: &Path, e: impl ToString) -> BurstError {
    BurstError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The directory of `path` (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Follows symbolic links from `path` (relative targets from the link's directory), up to
/// 40 of them, and returns the first path that is not a link (it may not exist).
pub fn follow_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::read_link(&p)?;
                p = if t.is_absolute() {
                    t
                } else {
                    parent_of(&p).join(t)
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// The file a path names: its device and inode when it exists, else its canonical directory
/// and name. Two paths with equal ids name one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileId {
    /// An existing file.
    Inode {
        /// `st_dev`.
        dev: u64,
        /// `st_ino`.
        ino: u64,
    },
    /// A file still to be created.
    Path(PathBuf),
}

impl FileId {
    /// The id of `path` (links followed); `None` for `-` (stdout) or a path whose directory
    /// cannot be resolved (it is refused elsewhere).
    pub fn of(path: &Path) -> Option<FileId> {
        if path == Path::new("-") {
            return None;
        }
        let target = follow_links(path).ok()?;
        match std::fs::metadata(&target) {
            Ok(m) => Some(FileId::Inode {
                dev: m.dev(),
                ino: m.ino(),
            }),
            Err(_) => {
                let name = target.file_name()?;
                let dir = std::fs::canonicalize(parent_of(&target)).ok()?;
                Some(FileId::Path(dir.join(name)))
            }
        }
    }
}

/// Refuses (as bad usage) any two of `named` (an option or role, and its path) that name
/// one file.
pub fn check_distinct(named: &[(&str, &Path)]) -> Result<(), BurstError> {
    let ids: Vec<Option<FileId>> = named.iter().map(|(_, p)| FileId::of(p)).collect();
    for i in 0..named.len() {
        for j in i + 1..named.len() {
            if ids[i].is_some() && ids[i] == ids[j] {
                return Err(BurstError::Usage(format!(
                    "{} {} and {} {} name one file",
                    named[i].0,
                    named[i].1.display(),
                    named[j].0,
                    named[j].1.display()
                )));
            }
        }
    }
    Ok(())
}

/// How a file output is written.
#[derive(Debug, Clone)]
enum Method {
    /// A regular file, new or existing: the atomic replace of `target` (links followed)
    /// through `temp`, in the target's directory; `mode` the existing file's permissions.
    Replace {
        target: PathBuf,
        temp: PathBuf,
        mode: Option<u32>,
    },
    /// A character device or a FIFO, written in place; `what` names it for messages.
    InPlace { target: PathBuf, what: &'static str },
}

/// A file named as an output; what each kind of path gets: the `output.rs` module docs (the README, "Nothing is lost, nothing is harmed").
#[derive(Debug, Clone)]
pub struct AtomicFile {
    path: PathBuf,
    method: Method,
}

/// Whether the mode bits or `access(2)` refuse writing `path`.
fn read_only(path: &Path, mode: u32) -> bool {
    if mode & 0o222 == 0 {
        return true;
    }
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; `access` only
    // reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) != 0 }
}

impl AtomicFile {
    /// Checks that `path` can be written without harm, before any work (the rules in the
    /// `output.rs` module docs). For a replaced file the temporary file is created and removed.
    pub fn prepare(path: &Path) -> Result<AtomicFile, BurstError> {
        if path.as_os_str().is_empty() {
            return Err(io_error(path, "empty file name"));
        }
        let target = follow_links(path).map_err(|e| io_error(path, e))?;
        let method = match std::fs::metadata(&target) {
            Ok(m) if m.is_dir() => return Err(io_error(path, "is a directory")),
            Ok(m) if m.is_file() => {
                let mode = m.permissions().mode() & 0o7777;
                if read_only(&target, mode) {
                    return Err(io_error(
                        path,
                        format!("is read-only (mode {mode:o}); not replaced"),
                    ));
                }
                Self::replace(path, &target, Some(mode))?
            }
            Ok(m) => {
                let t = m.file_type();
                let what = if t.is_char_device() {
                    "character device"
                } else if t.is_fifo() {
                    "FIFO"
                } else if t.is_socket() {
                    return Err(io_error(path, "is a socket; not written"));
                } else {
                    return Err(io_error(path, "is a block device; not written"));
                };
                Method::InPlace { target, what }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::replace(path, &target, None)?
            }
            Err(e) => return Err(io_error(path, e)),
        };
        let file = AtomicFile {
            path: path.to_path_buf(),
            method,
        };
        if let Method::Replace { temp, .. } = &file.method {
            file.open_temp(temp)?;
            std::fs::remove_file(temp).map_err(|e| io_error(temp, e))?;
        }
        Ok(file)
    }

    fn replace(path: &Path, target: &Path, mode: Option<u32>) -> Result<Method, BurstError> {
        let name = target
            .file_name()
            .ok_or_else(|| io_error(path, "not a file name"))?;
        let dir = parent_of(target);
        if !dir.is_dir() {
            return Err(io_error(
                path,
                format!("directory {} does not exist", dir.display()),
            ));
        }
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".tmp-{}", std::process::id()));
        Ok(Method::Replace {
            target: target.to_path_buf(),
            temp: dir.join(temp_name),
            mode,
        })
    }

    /// The file as named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is a regular file replaced atomically (so it can hold a partial
    /// report after every run, and be resumed); `false` for a device or FIFO written once.
    pub fn is_replaced(&self) -> bool {
        matches!(self.method, Method::Replace { .. })
    }

    fn open_temp(&self, temp: &Path) -> Result<File, BurstError> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(temp)
            .map_err(|e| io_error(&self.path, e))
    }

    /// Writes `bytes`: replaces a regular file atomically, or writes a device or FIFO in
    /// place.
    pub fn write(&self, bytes: &[u8]) -> Result<(), BurstError> {
        match &self.method {
            Method::InPlace { target, what } => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .open(target)
                    .map_err(|e| io_error(&self.path, format!("{what}: {e}")))?;
                f.write_all(bytes)
                    .and_then(|()| f.flush())
                    .map_err(|e| io_error(&self.path, format!("{what}: {e}")))
            }
            Method::Replace { target, temp, mode } => {
                let result = (|| {
                    let mut f = self.open_temp(temp)?;
                    f.write_all(bytes).map_err(|e| io_error(&self.path, e))?;
                    if let Some(mode) = mode {
                        f.set_permissions(std::fs::Permissions::from_mode(*mode))
                            .map_err(|e| io_error(&self.path, e))?;
                    }
                    f.sync_all().map_err(|e| io_error(&self.path, e))?;
                    drop(f);
                    std::fs::rename(temp, target).map_err(|e| io_error(&self.path, e))?;
                    // Make the rename itself durable.
                    if let Some(dir) = temp.parent()
                        && let Ok(d) = File::open(dir)
                    {
                        let _ = d.sync_all();
                    }
                    Ok(())
                })();
                if result.is_err() {
                    let _ = std::fs::remove_file(temp);
                }
                result
            }
        }
    }
}

/// An output named on the command line: a file, or stdout for `-`.
#[derive(Debug, Clone)]
pub enum Output {
    /// stdout (`-`).
    Stdout,
    /// A file (see [`AtomicFile`]).
    File(AtomicFile),
}

impl Output {
    /// Checks `path` (`-` is stdout) before any work; see [`AtomicFile::prepare`].
    pub fn prepare(path: &Path) -> Result<Output, BurstError> {
        if path == Path::new("-") {
            Ok(Output::Stdout)
        } else {
            AtomicFile::prepare(path).map(Output::File)
        }
    }

    /// Whether this is stdout.
    pub fn is_stdout(&self) -> bool {
        matches!(self, Output::Stdout)
    }

    /// Writes `text`: stdout, or the file.
    pub fn write(&self, text: &str) -> Result<(), BurstError> {
        match self {
            Output::Stdout => write_stdout(text),
            Output::File(f) => f.write(text.as_bytes()),
        }
    }

    /// `stdout` or the file name, for messages.
    pub fn describe(&self) -> String {
        match self {
            Output::Stdout => "stdout".to_string(),
            Output::File(f) => f.path().display().to_string(),
        }
    }
}
