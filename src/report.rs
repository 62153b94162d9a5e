//! How token-keeper speaks: one reporter carries every message, warning and error of a process,
//! in Actions' form or a plain one, and says whose words advice takes where it runs.
//!
//! The core and the tools say facts ("no store in …"); what to do about one is the front door's
//! to word (`Door`): an action input and a step in an Actions job, a flag and a command elsewhere.
//! The action's steps speak in workflow commands on stdout, which only the runner reads; every
//! command speaks in `token-keeper:` lines on stderr, as its stdout may be git's answer or a
//! token. Every line is one write, as other processes share the stream.

pub(crate) mod commands;

use std::io::Write;

use crate::env::Env;
use crate::{messages, secret};

/// A front door, whose words messages use for the settings they mention and the advice they
/// give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    /// The action's inputs.
    Action,
    /// setup's flags.
    CommandLine,
}

/// Where messages go, and how they are worded.
pub(crate) trait Reporter: Sync {
    fn say(&self, text: &str);
    fn warn(&self, text: &str);
    /// The one error a process ends with.
    fn error(&self, err: &anyhow::Error);
    /// From now on, mask every secret this process makes, where the runner reads masks.
    fn mask_secrets(&self);
    /// Whose words advice takes here.
    fn door(&self) -> Door;
}

/// In an Actions job: the action's steps (`commands`), or a command a later step runs.
pub(crate) struct Actions {
    pub(crate) commands: bool,
}

/// Anywhere else: lines on stderr, advice in the command line's words.
pub(crate) struct Plain;

/// The action's steps.
pub(crate) static STEP: Actions = Actions { commands: true };

/// The reporter of a command that runs in `env`.
pub(crate) fn for_command(env: &Env) -> &'static dyn Reporter {
    static IN_ACTIONS: Actions = Actions { commands: false };
    if env.in_actions() {
        &IN_ACTIONS
    } else {
        &Plain
    }
}

impl Reporter for Actions {
    fn say(&self, text: &str) {
        if self.commands {
            let _ = commands::print(&[messages::line(text)]);
        } else {
            on_stderr(text);
        }
    }

    fn warn(&self, text: &str) {
        if self.commands {
            let _ = commands::print(&[commands::warning(text)]);
        } else {
            on_stderr(&format!("warning: {text}"));
        }
    }

    fn error(&self, err: &anyhow::Error) {
        if self.commands {
            let _ = commands::print(&[commands::error(&format!("{err:#}"))]);
        } else {
            on_stderr(&format!("{err:#}"));
        }
    }

    fn mask_secrets(&self) {
        if self.commands {
            commands::mask_every_secret();
        } else {
            // The person's command shares stderr: each mask starts a line of its own.
            secret::announce_with(|value| {
                let masks = commands::masks_on_shared_stream(value);
                let _ = std::io::stderr().write_all(masks.as_bytes());
            });
        }
    }

    fn door(&self) -> Door {
        Door::Action
    }
}

impl Reporter for Plain {
    fn say(&self, text: &str) {
        on_stderr(text);
    }

    fn warn(&self, text: &str) {
        on_stderr(&format!("warning: {text}"));
    }

    fn error(&self, err: &anyhow::Error) {
        on_stderr(&format!("{err:#}"));
    }

    /// No runner reads masks here; nothing we print holds a secret.
    fn mask_secrets(&self) {}

    fn door(&self) -> Door {
        Door::CommandLine
    }
}

fn on_stderr(text: &str) {
    messages::say(std::io::stderr(), text);
}
