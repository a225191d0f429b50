//! Where results go: report files written atomically (checked before any work), stdout with
//! its write errors reported instead of a panic, and messages on stderr.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::BurstError;

/// Writes a line to stderr; a failing stderr is ignored (there is nowhere left to report it).
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Writes `text` to stdout. A closed pipe (`| head`) ends the output quietly; any other
/// failure (`> /dev/full`) is an error naming stdout.
pub fn write_stdout(text: &str) -> Result<(), BurstError> {
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
    let _ = err.write_all(text.as_bytes());
}

/// A report file that is replaced atomically on every write: the text goes to a temporary
/// file in the same directory, is flushed to disk, then renamed over the file. Readers see
/// the old or the new report, never a part of one, and a crash leaves the last one written.
#[derive(Debug, Clone)]
pub struct AtomicFile {
    path: PathBuf,
    temp: PathBuf,
}

fn io_error(path: &Path, e: impl ToString) -> BurstError {
    BurstError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl AtomicFile {
    /// Checks that `path` can be written, before any work: it is not a directory, its
    /// directory exists, and a file can be created there (the temporary file is created and
    /// removed).
    pub fn prepare(path: &Path) -> Result<AtomicFile, BurstError> {
        if path.as_os_str().is_empty() {
            return Err(io_error(path, "empty file name"));
        }
        if path.is_dir() {
            return Err(io_error(path, "is a directory"));
        }
        let name = path
            .file_name()
            .ok_or_else(|| io_error(path, "not a file name"))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(io_error(
                path,
                format!("directory {} does not exist", dir.display()),
            ));
        }
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".tmp-{}", std::process::id()));
        let file = AtomicFile {
            path: path.to_path_buf(),
            temp: dir.join(temp_name),
        };
        file.open_temp()?;
        std::fs::remove_file(&file.temp).map_err(|e| io_error(&file.temp, e))?;
        Ok(file)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_temp(&self) -> Result<File, BurstError> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.temp)
            .map_err(|e| io_error(&self.path, e))
    }

    /// Replaces the file's contents with `bytes`, atomically.
    pub fn write(&self, bytes: &[u8]) -> Result<(), BurstError> {
        let result = (|| {
            let mut f = self.open_temp()?;
            f.write_all(bytes).map_err(|e| io_error(&self.path, e))?;
            f.sync_all().map_err(|e| io_error(&self.path, e))?;
            drop(f);
            std::fs::rename(&self.temp, &self.path).map_err(|e| io_error(&self.path, e))?;
            // Make the rename itself durable.
            if let Some(dir) = self.temp.parent()
                && let Ok(d) = File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.temp);
        }
        result
    }
}

/// An output named on the command line: a file, or stdout for `-`.
#[derive(Debug, Clone)]
pub enum Output {
    /// stdout (`-`).
    Stdout,
    /// A file, written atomically.
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

    /// Writes `text`: stdout, or the file atomically.
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
