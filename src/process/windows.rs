//! Processes on Windows: a command's tree is a Job Object; no signals to pass on, and a child
//! always ends with a code.
//!
//! The command is created suspended, put in a Job Object that kills what it holds when its last
//! handle closes, and resumed: whatever it starts is in the job from its first instruction, and
//! `TerminateJobObject` ends them all. Only a process started on its behalf by another (a
//! service, WMI) is outside the job; the job allows no breakaway.

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle};
use std::os::windows::process::CommandExt;
use std::process::{Child, Command, ExitStatus};

use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject,
};
use windows_sys::Win32::System::Threading::{
    CREATE_NEW_PROCESS_GROUP, CREATE_SUSPENDED, DETACHED_PROCESS, INFINITE, OpenThread,
    ResumeThread, THREAD_SUSPEND_RESUME, WaitForSingleObject,
};

/// The job that holds the command and all it starts; closing it kills them.
pub(super) struct Group {
    job: OwnedHandle,
}

impl Group {
    /// Start `command` suspended, put it in a job of its own, then let it run.
    pub(super) fn start(mut command: Command) -> io::Result<(Child, Self)> {
        let job = job()?;
        command.creation_flags(CREATE_SUSPENDED);
        let mut child = command.spawn()?;
        // SAFETY: both handles are ours and open.
        let put = unsafe { AssignProcessToJobObject(job.as_raw_handle(), child.as_raw_handle()) };
        let started = if put == 0 {
            Err(io::Error::last_os_error())
        } else {
            resume(child.id())
        };
        if let Err(cause) = started {
            // Suspended, it has started nothing.
            let _ = child.kill();
            return Err(cause);
        }
        Ok((child, Self { job }))
    }

    /// Kill every process in the job.
    pub(super) fn end(&self, _leader: &mut Child) {
        // SAFETY: the job's handle is ours and open.
        unsafe { TerminateJobObject(self.job.as_raw_handle(), 1) };
    }
}

/// Something that returns once `child` has exited.
pub(super) fn exited(child: &Child) -> io::Result<impl FnOnce() + Send + 'static> {
    let process = child.as_handle().try_clone_to_owned()?;
    Ok(move || {
        // SAFETY: the handle is ours, open until this returns.
        unsafe { WaitForSingleObject(process.as_raw_handle(), INFINITE) };
    })
}

/// `script` for `cmd`, which every Windows has, and which Buildkite's agent and Azure's `script`
/// steps run scripts with on Windows.
pub(crate) fn shell(script: &str) -> Command {
    let mut shell = Command::new("cmd.exe");
    shell.raw_arg(super::cmd_arguments(script));
    shell
}

/// No console of ours, and a process group of its own, which Ctrl+Break does not reach.
pub(super) fn apart(command: &mut Command) {
    command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
}

/// Windows has no signals: a cancelled job's Ctrl+C reaches the child as it reaches us, through
/// the console we share.
pub(super) fn spawn_forwarding(child: &mut Command) -> io::Result<Child> {
    child.spawn()
}

/// Windows has no signals: a child always ends with a code.
pub(super) fn signal(_: ExitStatus) -> Option<i32> {
    None
}

/// A new job, unnamed, that kills what it holds when its last handle closes: ours, when we are
/// done or ended ourselves.
fn job() -> io::Result<OwnedHandle> {
    // SAFETY: no attributes and no name: a new job that only we hold.
    let job = owned(unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) })?;
    let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: the structure this information class takes, and its size.
    let set = unsafe {
        SetInformationJobObject(
            job.as_raw_handle(),
            JobObjectExtendedLimitInformation,
            (&raw const limits).cast(),
            size_of_val(&limits) as u32,
        )
    };
    if set == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(job)
}

/// Resume the threads of `pid`, created suspended: it has one. std keeps no handle to it, so it
/// is found among the system's threads.
fn resume(pid: u32) -> io::Result<()> {
    // SAFETY: a snapshot of every thread; the process id is ignored for threads.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snapshot == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    let snapshot = owned(snapshot)?;
    let mut entry = THREADENTRY32 {
        dwSize: size_of::<THREADENTRY32>() as u32,
        ..THREADENTRY32::default()
    };
    let mut resumed = false;
    // SAFETY: the snapshot is open, and `entry` says its own size.
    let mut more = unsafe { Thread32First(snapshot.as_raw_handle(), &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            // SAFETY: no memory preconditions; a null handle is an error.
            let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
            let thread = owned(thread)?;
            // SAFETY: the thread's handle is ours and open.
            resumed |= unsafe { ResumeThread(thread.as_raw_handle()) } != u32::MAX;
        }
        // SAFETY: as for the first.
        more = unsafe { Thread32Next(snapshot.as_raw_handle(), &mut entry) } != 0;
    }
    if resumed {
        Ok(())
    } else {
        Err(io::Error::other(
            "the command's thread was not found to resume",
        ))
    }
}

/// `handle`, just returned to us, closed when dropped; null is the last error.
fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a handle that is ours alone, closed only by its owner.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

#[cfg(test)]
mod tests {
    use super::shell as cmd;
    use crate::process::{LIMITS, Stopped, run};

    #[test]
    fn what_a_command_prints_and_its_status_are_read() {
        let ran = run(cmd("echo token& echo said 1>&2& exit 3"), &LIMITS).unwrap();
        assert_eq!(ran.status.code(), Some(3));
        assert_eq!(ran.stdout, b"token\r\n");
        assert_eq!(ran.stderr, b"said \r\n");
    }

    #[test]
    fn a_command_printing_past_the_stdout_bound_is_ended_there() {
        // A loop without end: only the job's end stops it before the time limit.
        let forever = cmd("for /L %i in (1,0,2) do @echo yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
        let stopped = run(forever, &LIMITS).unwrap_err();
        assert!(matches!(stopped, Stopped::TooLong), "{stopped:?}");
    }

    #[test]
    fn what_a_command_leaves_behind_is_ended_when_it_exits() {
        // The background `cmd` holds stdout for 30 s, unless the job ends it with the command.
        let script = r#"start /b cmd /c "ping -n 30 127.0.0.1 >nul" & echo token"#;
        let ran = run(cmd(script), &LIMITS).unwrap();
        assert_eq!(ran.stdout, b"token\r\n");
    }
}
