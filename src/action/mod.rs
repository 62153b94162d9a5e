//! The GitHub Actions side: inputs, the runner's environment and file commands, the layout,
//! the shim's git configuration, the step summary, and the main and post steps.

pub(crate) mod env;
pub mod inputs;
pub(crate) mod layout;
pub(crate) mod main_step;
pub mod permissions;
pub(crate) mod post_step;
pub(crate) mod shim;
mod summary;
pub(crate) mod workflow;
