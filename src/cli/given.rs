//! What a person gives the command line, as flags, arguments or `TOKEN_KEEPER_*` variables: refused
//! before anything reads it when it holds a secret, and then shown only cut short.
//!
//! A key or a token pasted where a path, a name or a URL belongs would be echoed by the first
//! error about it, by clap's own messages, or by `--help`, which shows the variables' values. So
//! every value is looked at first (`secret::kind_in`), and one that holds a secret is named by
//! where it came from, never shown. What passes may still be long: clap's errors quote it cut.

use crate::env::Env;
use std::ffi::{OsStr, OsString};

use clap::error::{ContextValue, ErrorKind};

use crate::github::client::HttpEnv;
use crate::keeper::store::locate::STATE_VARIABLE;
use crate::messages;
use crate::secret;

/// Why the command line was refused: one line, with nothing of the value that made it so.
#[derive(Debug)]
pub struct Refused(pub(super) String);

/// The first value of `args` (the program's arguments, its name first) or of the variables `var`
/// reads that holds a secret, refused with where it came from. A command's own arguments, after
/// `--` or `exec`'s command, are that command's business.
pub(super) fn check(command: &clap::Command, args: &[OsString], env: &Env) -> Result<(), Refused> {
    check_args(command, args)?;
    for (name, belongs) in variables(command) {
        if let Some(value) = env.get(&name) {
            refuse_secret(&format!("`{name}`"), OsStr::new(value), &belongs)?;
        }
    }
    Ok(())
}

fn check_args(command: &clap::Command, args: &[OsString]) -> Result<(), Refused> {
    let mut scope = command;
    let mut value_of: Option<&clap::Arg> = None;
    for arg in args.iter().skip(1) {
        if let Some(flag) = value_of.take() {
            refuse_secret(&flag_name(flag), arg, &belongs_in(flag))?;
            continue;
        }
        let text = arg.to_string_lossy();
        if text == "--" {
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            let flag = scope.get_arguments().find(|a| a.get_long() == Some(name));
            match (flag, inline) {
                (Some(flag), Some(value)) => {
                    refuse_secret(&flag_name(flag), OsStr::new(value), &belongs_in(flag))?
                }
                (Some(flag), None) if flag.get_action().takes_values() => value_of = Some(flag),
                (Some(_), None) => {}
                // `exec`'s command may start with a hyphen: from there on it is the command's.
                (None, _) if is_exec(scope) => break,
                (None, _) => refuse_secret("a command-line argument", arg, "a flag")?,
            }
            continue;
        }
        // `exec`'s command and its arguments follow its flags.
        if is_exec(scope) {
            break;
        }
        refuse_secret("a command-line argument", arg, "an argument")?;
        if let Some(sub) = scope.find_subcommand(text.as_ref()) {
            scope = sub;
        }
    }
    Ok(())
}

fn is_exec(command: &clap::Command) -> bool {
    command.get_name() == "exec"
}

/// Every variable a value may come from, with what belongs in it: the flags' and the stores'
/// and the HTTP bounds' variables.
fn variables(command: &clap::Command) -> Vec<(String, String)> {
    let mut found = vec![(STATE_VARIABLE.to_owned(), "a path".to_owned())];
    found.extend(
        HttpEnv::VARIABLES
            .iter()
            .map(|name| ((*name).to_owned(), "a duration".to_owned())),
    );
    let mut commands = vec![command];
    while let Some(command) = commands.pop() {
        commands.extend(command.get_subcommands());
        for arg in command.get_arguments() {
            if let Some(name) = arg.get_env().and_then(OsStr::to_str)
                && !found.iter().any(|(known, _)| known == name)
            {
                found.push((name.to_owned(), belongs_in(arg)));
            }
        }
    }
    found
}

/// `value`, given at `place` where `belongs` belongs, refused if it holds a secret.
fn refuse_secret(place: &str, value: &OsStr, belongs: &str) -> Result<(), Refused> {
    match secret::kind_in(&value.to_string_lossy()) {
        None => Ok(()),
        Some(kind) => Err(Refused(format!(
            "{place} holds {}, not {belongs}: {}",
            kind.what(),
            kind.fix()
        ))),
    }
}

fn flag_name(flag: &clap::Arg) -> String {
    format!("`--{}`", flag.get_long().unwrap_or_default())
}

/// What belongs in `arg`'s value, from its value name.
fn belongs_in(arg: &clap::Arg) -> String {
    let name = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|name| name.as_str().to_owned())
        .unwrap_or_else(|| arg.get_id().as_str().to_ascii_uppercase());
    match name.as_str() {
        "PATH" | "FILE" | "DIR" => "a path".to_owned(),
        "NAME" => "a variable's name".to_owned(),
        "NAME=LEVEL" => "a permission".to_owned(),
        "NAMES" => "repository names".to_owned(),
        "URL" => "a URL".to_owned(),
        other => {
            let other = other.to_ascii_lowercase().replace('_', " ");
            let article = if other.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {other}")
        }
    }
}

/// A clap error as one line, each value it quotes cut (`messages::short`); help and versions,
/// which clap prints itself, come back as they are.
pub(super) fn one_line(mut err: clap::Error) -> Result<String, clap::Error> {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return Err(err);
    }
    let cut = messages::short;
    let quoted: Vec<_> = err
        .context()
        .map(|(kind, value)| (kind, value.clone()))
        .collect();
    for (kind, value) in quoted {
        let value = match value {
            ContextValue::String(text) => ContextValue::String(cut(&text)),
            ContextValue::Strings(texts) => {
                ContextValue::Strings(texts.iter().map(|t| cut(t)).collect())
            }
            other => other,
        };
        err.insert(kind, value);
    }
    let rendered = err.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("Usage:"))
        .map(|line| line.strip_prefix("error: ").unwrap_or(line))
        .map(|line| line.trim_end_matches('.'))
        .collect();
    Ok(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm9jdG8tb3JnL2FwcCJ9.c2lnbmF0dXJl";
    const TOKEN: &str = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";

    fn checked(args: &[&str], vars: &[(&str, &str)]) -> Result<(), String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        check(
            &Cli::command(),
            &args,
            &Env::from_pairs(vars.iter().copied()),
        )
        .map_err(|Refused(why)| why)
    }

    #[test]
    fn a_secret_is_named_by_the_flag_or_variable_it_came_in() {
        let tk = "token-keeper";
        let refused = |args: &[&str], vars: &[(&str, &str)]| checked(args, vars).unwrap_err();
        assert_eq!(
            refused(&[tk, "setup", "--identity-env", JWT], &[]),
            "`--identity-env` holds a JWT, not a variable's name: pass where it is kept (a file, or the name of the variable that holds it), never the value itself"
        );
        assert!(
            refused(&[tk, "setup", &format!("--owner={TOKEN}")], &[])
                .starts_with("`--owner` holds a token, not an owner: ")
        );
        assert!(
            refused(&[tk, "setup"], &[("TOKEN_KEEPER_API_URL", TOKEN)])
                .starts_with("`TOKEN_KEEPER_API_URL` holds a token, not a URL: ")
        );
        assert!(
            refused(&[tk, "revoke"], &[("TOKEN_KEEPER_STATE", JWT)])
                .starts_with("`TOKEN_KEEPER_STATE` holds a JWT, not a path: ")
        );
        assert!(
            refused(&[tk, "token"], &[("TOKEN_KEEPER_DEADLINE", TOKEN)])
                .starts_with("`TOKEN_KEEPER_DEADLINE` holds a token, not a duration: ")
        );
        assert!(
            refused(&[tk, "setup", JWT], &[])
                .starts_with("a command-line argument holds a JWT, not an argument: ")
        );
        assert!(
            refused(&[tk, &format!("--bogus={TOKEN}")], &[])
                .starts_with("a command-line argument holds a token")
        );
    }

    #[test]
    fn a_commands_own_arguments_and_plain_values_pass() {
        let tk = "token-keeper";
        assert_eq!(checked(&[tk, "exec", "--", "echo", TOKEN], &[]), Ok(()));
        assert_eq!(checked(&[tk, "exec", "curl", "-H", TOKEN], &[]), Ok(()));
        assert_eq!(checked(&[tk, "exec", "--tool-flag", TOKEN], &[]), Ok(()));
        assert_eq!(
            checked(&[tk, "exec", "--owner", "octo-org", "sh", "-c", JWT], &[]),
            Ok(())
        );
        assert_eq!(
            checked(
                &[
                    tk,
                    "setup",
                    "--owner",
                    "Octo-Org",
                    "--private-key-file",
                    "/home/runner/work/_temp/app-key.pem"
                ],
                &[(
                    "TOKEN_KEEPER_STATE",
                    "/tmp/token-keeper-1000/4242/setup-Ab3dE"
                )]
            ),
            Ok(())
        );
    }

    #[test]
    fn clap_errors_are_one_line_and_quote_values_cut() {
        let long = "x".repeat(5000);
        let err = Cli::command()
            .try_get_matches_from(["token-keeper", "setup", "--format", &long])
            .unwrap_err();
        let line = one_line(err).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.len() < 400, "{line}");
        assert!(line.contains("--format"), "{line}");
        let help = Cli::command()
            .try_get_matches_from(["token-keeper", "--help"])
            .unwrap_err();
        assert!(one_line(help).is_err());
    }
}
