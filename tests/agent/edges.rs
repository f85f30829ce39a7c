//! Clean edges of the agent process: start-up refusals are one clear line
//! and a non-zero exit, never a panic, and never touch another agent's state.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::wait_exit;
use super::util::*;

/// Runs `cdx-client run` on `config` and returns its exit status and stderr.
fn run_to_exit(config: &std::path::Path) -> (std::process::ExitStatus, String) {
    let child = Command::new(client_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A second agent on the same configuration exits 1 naming the running
/// one's pid, and leaves its message database where it is.
#[test]
fn a_second_agent_refuses_to_start_and_touches_nothing() {
    let hq = Hq::start();
    hq.publish_initial(small());
    let store = StoreDir::new();
    let config = store.write_config(&hq.url(), "reliable", "");
    let mut first = spawn_client(&config);
    assert!(wait_until(Duration::from_secs(60), || store.applied() > 0));
    let (status, stderr) = run_to_exit(&config);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("already running (pid {})", first.id())),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let aside: Vec<_> = std::fs::read_dir(store.path().join("work"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
        .collect();
    assert!(aside.is_empty(), "the message database was moved aside");
    assert!(first.try_wait().unwrap().is_none(), "the first agent died");
    super::process::signal(&first, "TERM");
    assert!(wait_exit(&mut first, Duration::from_secs(30))
        .unwrap()
        .success());
}

/// A status port in use is one line naming the key and the address, exit
/// non-zero, no panic.
#[test]
fn a_busy_status_port_is_one_clear_line() {
    let hq = Hq::start();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let store = StoreDir::new();
    let config = store.write_config(&hq.url(), "reliable", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &busy.local_addr().unwrap().to_string());
    std::fs::write(&config, text).unwrap();
    let (status, stderr) = run_to_exit(&config);
    assert!(!status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("cdx-client:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("status.listen"), "{stderr}");
}

/// A password in the server URL stops the agent before it starts: the
/// error names the key and never the password.
#[test]
fn user_info_in_the_server_url_is_refused_at_start() {
    let store = StoreDir::new();
    let config = store.write_config("http://store-0001:hunter2@127.0.0.1:9", "reliable", "");
    let (status, stderr) = run_to_exit(&config);
    assert!(!status.success());
    assert!(stderr.contains("server.url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// `config check` prints the effective configuration with the secret
/// redacted and exits 0; a bad file exits 78 (EX_CONFIG) naming the key.
#[test]
fn config_check_prints_the_effective_configuration_or_exits_78() {
    let store = StoreDir::new();
    let config = store.write_config("http://127.0.0.1:9", "streaming", "");
    let check = |config: &std::path::Path| {
        Command::new(client_bin())
            .args(["config", "check", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let good = check(&config);
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert_eq!(good.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("secret = \"***\""), "{stdout}");
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert!(stdout.contains("mode = \"streaming\""), "{stdout}");
    assert!(stdout.contains("journal_retention = \"7days\""), "{stdout}");

    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("chunk_bytes = 65536", "chunk_bytes = 1");
    std::fs::write(&config, text).unwrap();
    let bad = check(&config);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("download.chunk_bytes"), "{stderr}");
}
