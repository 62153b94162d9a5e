//! The GitHub Actions side: inputs, the runner's file commands, and the main and post steps.

pub mod inputs;
pub mod layout;
pub mod main_step;
pub mod permissions;
pub mod post_step;
pub mod shim;
pub mod workflow;
