//! The process meter itself: a child's figures are its own, whatever this test process holds.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use testkit::assert_success;
use testkit::measure;
use testkit::runner::{as_user, binary, is_root};

/// Measure a small program while this process holds 200 MiB it has touched: the peak must be
/// the child's few MiB.
fn small_child_beside_a_big_parent(command: &mut Command) {
    let ballast = std::hint::black_box(vec![1u8; 200 << 20]);
    let measured = measure::run(command, b"").expect("the small program");
    assert_success("the small program", &measured.output);
    let peak = measured.max_rss_kib.expect("the child's peak memory");
    assert!(
        peak < 16 * 1024,
        "peak {peak} KiB, with {} MiB held by the test process",
        ballast.len() >> 20
    );
}

#[test]
fn a_small_child_of_a_big_test_process_measures_small() {
    small_child_beside_a_big_parent(Command::new(binary()).arg("--version"));
}

#[test]
fn a_child_switched_to_another_user_is_measured_too() {
    if !is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    // A program that user can reach: the checkout may sit in a home it cannot enter.
    let mut command = Command::new("true");
    as_user(&mut command, 65534);
    small_child_beside_a_big_parent(&mut command);
}

#[test]
fn signals_reach_a_measured_child_as_they_would_untraced() {
    let script = "trap 'echo caught' USR1; kill -USR1 $$; echo on";
    let handled = measure::run(Command::new("sh").args(["-c", script]), b"").expect("sh");
    assert_eq!(
        String::from_utf8_lossy(&handled.output.stdout),
        "caught\non\n"
    );
    let ended = measure::run(Command::new("sh").args(["-c", "kill -TERM $$"]), b"").expect("sh");
    assert_eq!(ended.output.status.signal(), Some(libc::SIGTERM));
    assert!(ended.max_rss_kib.is_ok(), "{:?}", ended.max_rss_kib);
}

#[test]
fn where_ptrace_is_refused_the_peak_is_said_to_be_unknown() {
    let mut command = Command::new(binary());
    command.arg("--version");
    forbid_ptrace(&mut command);
    let measured = measure::run(&mut command, b"").expect("token-keeper --version");
    assert_success("token-keeper --version", &measured.output);
    assert!(String::from_utf8_lossy(&measured.output.stdout).starts_with("token-keeper "));
    let why = measured.max_rss_kib.expect_err("no figure without ptrace");
    assert!(why.contains("refuses ptrace"), "{why}");
}

/// The child's ptrace calls fail with EPERM, as under a seccomp profile that forbids them.
fn forbid_ptrace(command: &mut Command) {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        // The system call's number, the first field of `seccomp_data`.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            jf: 1,
            ..stmt(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                libc::SYS_ptrace as u32,
            )
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: prctl is async-signal-safe; the kernel copies the filter during the call.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
