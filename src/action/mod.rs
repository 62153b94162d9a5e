//! The action's front door: its inputs (turned into the keeper's settings), the file commands,
//! the layout, the shim's binary and helper command, the step summary, and the main and post
//! steps, which begin and end a job's keeper through `keeper::job`.

pub mod inputs;
pub(crate) mod layout;
pub(crate) mod main_step;
pub mod permissions;
pub(crate) mod post_step;
pub(crate) mod shim;
mod summary;
pub(crate) mod workflow;
