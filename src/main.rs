//! The binary: parse the command line, run the role, print the one top-level error.

use std::process::ExitCode;

use token_keeper::cli;

fn main() -> ExitCode {
    let role = match cli::parse(std::env::args_os()) {
        Ok(role) => role,
        Err(usage) => return usage.exit(),
    };
    cli::run(&role).unwrap_or_else(|failure| {
        role.report(&failure);
        failure.code()
    })
}
