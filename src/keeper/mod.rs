//! The token store shared by every process of a job: state on disk, locks, the refresh policy.

pub mod state;
