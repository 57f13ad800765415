//! Python with the stock NATS client, for tests that prove other languages can speak the wire
//! format. The packages are installed once into the tools directory (`.tools/`), the same way
//! as nats-server, so a fresh machine needs only `python3` with `pip`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use switchyard_dispatcher::local_nats::install::{pip_install, python_executable, tools_dir};
use tokio::process::Command;
use tokio::sync::OnceCell;

/// The pinned packages: the stock NATS client and MessagePack.
pub const PYTHON_PACKAGES: [&str; 2] = ["nats-py==2.16.0", "msgpack==1.2.4"];

/// The interpreter and the directory holding the packages, found or installed once per process.
static PYTHON: OnceCell<(PathBuf, PathBuf)> = OnceCell::const_new();

/// A Python command that can import the [`PYTHON_PACKAGES`], running `script` with `args`.
///
/// # Panics
/// When `python3` or `pip` is missing, or the packages cannot be installed; the message says
/// which command failed and quotes its output.
pub async fn python_command(script: &Path, args: &[&str]) -> Command {
    let (python, site) = python_paths().await;
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(args)
        .env("PYTHONPATH", site)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The Python interpreter and the directory holding the [`PYTHON_PACKAGES`] (for
/// `PYTHONPATH`), found or installed once per process: for a Python program started by
/// something else than the test, such as a worker started by a host.
///
/// # Panics
/// As [`python_command`].
pub async fn python_paths() -> (PathBuf, PathBuf) {
    PYTHON
        .get_or_init(|| async {
            tokio::task::spawn_blocking(install)
                .await
                .expect("the install task does not panic")
        })
        .await
        .clone()
}

fn install() -> (PathBuf, PathBuf) {
    let tools = tools_dir();
    let dir_name = format!("python-{}", PYTHON_PACKAGES.join("-"));
    let proof = Path::new("nats").join("__init__.py");
    if !tools.join(&dir_name).join(&proof).exists() {
        // Straight to stderr: the test harness captures `eprintln!`, and a person running
        // the tests should see that something is being installed.
        let _ = writeln!(
            std::io::stderr().lock(),
            "installing {} into {} for the interoperability tests",
            PYTHON_PACKAGES.join(" "),
            tools.join(&dir_name).display()
        );
    }
    let site = pip_install(&tools, &dir_name, &PYTHON_PACKAGES, &proof)
        .unwrap_or_else(|e| panic!("cannot install the Python packages: {e}"));
    let python = python_executable(&tools).unwrap_or_else(|e| panic!("{e}"));
    (python, site)
}
