//! The async runtime that drives calls, started only when we talk to GitHub.

use std::future::Future;
use std::mem::ManuallyDrop;

use super::ApiError;

/// One thread is plenty for a handful of requests, and starts fastest.
pub(super) fn runtime() -> Result<Runtime, ApiError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|runtime| Runtime(ManuallyDrop::new(runtime)))
        .map_err(|e| ApiError::Setup(format!("cannot start the async runtime: {e}")))
}

/// An async runtime that, when dropped, does not wait for work stuck outside it: a DNS lookup
/// blocked in the system resolver holds a thread of its own, and waiting for that thread would
/// break every time bound we promise.
pub(crate) struct Runtime(ManuallyDrop<tokio::runtime::Runtime>);

impl Runtime {
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: the runtime is taken once, here, and the wrapper is never used again.
        let runtime = unsafe { ManuallyDrop::take(&mut self.0) };
        runtime.shutdown_background();
    }
}
