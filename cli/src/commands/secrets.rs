//! Secrets kept off command lines: URLs with passwords read from files, and files that only
//! their owner can read.
//!
//! A password on a command line is visible to every user of the machine (the process list)
//! and stays in shell histories, so each URL can come from a file instead: `--url-file`
//! beside `--url`, and the environment's `…_FILE` beside the variable. A command-line option
//! wins over the environment; the two options together, or both variables set, are refused
//! rather than one picked silently.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::CliError;

/// Where one URL may come from: an option, an option naming a file, and their two
/// environment variables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UrlSource<'a> {
    /// The value of the URL option (`--url`), if given.
    pub(crate) url: Option<&'a str>,
    /// The value of the file option (`--url-file`), if given.
    pub(crate) file: Option<&'a Path>,
    /// The variable holding the URL (`SWITCHYARD_NATS_URL`).
    pub(crate) env: &'static str,
    /// The variable naming the file (`SWITCHYARD_NATS_URL_FILE`).
    pub(crate) env_file: &'static str,
}

impl UrlSource<'_> {
    /// The URL, or `None` when no source gives one. `lookup` reads the environment; an empty
    /// variable counts as unset.
    ///
    /// # Errors
    /// [`CliError::UrlTwice`] when both variables are set (and no option overrides them), or
    /// the file's error ([`read_url_file`]).
    pub(crate) fn resolve(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, CliError> {
        if let Some(url) = self.url {
            return Ok(Some(url.to_owned()));
        }
        if let Some(file) = self.file {
            return read_url_file(file).map(Some);
        }
        let set = |name| lookup(name).filter(|value| !value.is_empty());
        match (set(self.env), set(self.env_file)) {
            (Some(_), Some(_)) => Err(CliError::UrlTwice {
                env: self.env,
                env_file: self.env_file,
            }),
            (Some(url), None) => Ok(Some(url)),
            (None, Some(file)) => read_url_file(Path::new(&file)).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// The environment, for [`UrlSource::resolve`].
pub(crate) fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The URL in `path` (e.g. `admin.url` of `switchyard auth init`), without surrounding
/// whitespace. The errors name the file, never its contents.
///
/// # Errors
/// [`CliError::Io`] when it cannot be read, [`CliError::EmptyUrlFile`] when it holds nothing.
pub(crate) fn read_url_file(path: &Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        action: "read the URL file",
        path: path.to_owned(),
        source,
    })?;
    let url = text.trim();
    if url.is_empty() {
        return Err(CliError::EmptyUrlFile {
            path: path.to_owned(),
        });
    }
    Ok(url.to_owned())
}

/// Opens a new file that only its owner can read or write (mode 0600 on Unix); refuses to
/// replace an existing one.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Writes a new file readable by its owner only; refuses to overwrite one.
///
/// # Errors
/// [`CliError::Io`] naming the file.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut file = create_private(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}

/// A file readable by its owner only that replaces `target` once [`commit`](Self::commit)ted:
/// written beside it first, so that a failure leaves `target` as it was, and so that it is
/// private from its first byte even when `target` exists with a wider mode.
#[derive(Debug)]
pub(crate) struct PrivateReplacement {
    target: PathBuf,
    staged: PathBuf,
    file: Option<std::fs::File>,
}

impl PrivateReplacement {
    /// Creates the staging file beside `target`: fails early (before a secret is made) when
    /// the directory is not writable.
    ///
    /// # Errors
    /// [`CliError::Io`] naming the staging file.
    pub(crate) fn begin(target: &Path) -> Result<Self, CliError> {
        let name = target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staged = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let file = create_private(&staged).map_err(|source| CliError::Io {
            action: "create",
            path: staged.clone(),
            source,
        })?;
        Ok(Self {
            target: target.to_owned(),
            staged,
            file: Some(file),
        })
    }

    /// The file it replaces.
    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    /// Writes `contents` and moves the file over the target.
    ///
    /// # Errors
    /// [`CliError::Io`] naming the file.
    pub(crate) fn commit(mut self, contents: &str) -> Result<(), CliError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| CliError::Io {
                action,
                path,
                source,
            }
        };
        let mut file = self.file.take().ok_or_else(|| CliError::Io {
            action: "write",
            path: self.staged.clone(),
            source: std::io::Error::other("already written"),
        })?;
        file.write_all(contents.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("write", &self.staged))?;
        drop(file);
        std::fs::rename(&self.staged, &self.target).map_err(io("replace", &self.target))
    }
}

impl Drop for PrivateReplacement {
    fn drop(&mut self) {
        // Not committed, or the rename failed: the staging file goes.
        if self.staged.exists() {
            let _ = std::fs::remove_file(&self.staged);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ENV: &str = "TEST_URL";
    const ENV_FILE: &str = "TEST_URL_FILE";

    fn source<'a>(url: Option<&'a str>, file: Option<&'a Path>) -> UrlSource<'a> {
        UrlSource {
            url,
            file,
            env: ENV,
            env_file: ENV_FILE,
        }
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn options_win_over_the_environment_and_files_are_read_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.url");
        std::fs::write(&file, "  nats://admin:pw@h:4222\n").unwrap();
        let from_file = Some("nats://admin:pw@h:4222".to_owned());
        let both_env = env(&[(ENV, "nats://env:1"), (ENV_FILE, "/nowhere")]);

        assert_eq!(
            source(Some("nats://flag:1"), None)
                .resolve(&both_env)
                .unwrap(),
            Some("nats://flag:1".to_owned())
        );
        assert_eq!(
            source(None, Some(&file)).resolve(&both_env).unwrap(),
            from_file
        );
        assert_eq!(
            source(None, None)
                .resolve(env(&[(ENV_FILE, file.to_str().unwrap())]))
                .unwrap(),
            from_file
        );
        assert_eq!(
            source(None, None)
                .resolve(env(&[(ENV, "nats://env:1"), (ENV_FILE, "")]))
                .unwrap(),
            Some("nats://env:1".to_owned())
        );
        assert_eq!(source(None, None).resolve(env(&[])).unwrap(), None);
    }

    #[test]
    fn both_variables_set_is_refused() {
        let error = source(None, None)
            .resolve(env(&[(ENV, "nats://env:1"), (ENV_FILE, "/x")]))
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains(ENV) && text.contains(ENV_FILE), "{text}");
    }

    #[test]
    fn unreadable_and_empty_files_are_errors_naming_the_file_not_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.url");
        let text = read_url_file(&missing).unwrap_err().to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");

        let empty = dir.path().join("empty.url");
        std::fs::write(&empty, "\n  \n").unwrap();
        let error = read_url_file(&empty).unwrap_err();
        assert!(matches!(error, CliError::EmptyUrlFile { .. }), "{error}");
        assert!(error.to_string().contains("empty.url"), "{error}");
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_new_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.url");
        write_private(&path, "secret").unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert!(write_private(&path, "other").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
    }

    #[test]
    fn a_replacement_is_private_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        PrivateReplacement::begin(&path)
            .unwrap()
            .commit("new\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);

        // Abandoned: the target stays, the staging file goes.
        drop(PrivateReplacement::begin(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        assert!(PrivateReplacement::begin(&dir.path().join("no/such/dir/token")).is_err());
    }
}
