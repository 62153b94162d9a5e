//! The action's front door: its inputs (turned into the keeper's settings), the file commands,
//! the step summary, and the main and post steps, which begin and end a job's keeper through
//! `keeper::job` and install git's helper through `git`.

pub(crate) mod file_commands;
pub mod inputs;
pub(crate) mod main_step;
pub mod permissions;
pub(crate) mod post_step;
mod summary;
