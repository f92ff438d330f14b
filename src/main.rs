//! `tapstack`: runs the no_std stack on a Linux TAP.
//!
//! `main` only parses and hands over: `main -> run -> ExitCode`. Everything
//! std (TAP, clock, signals, CLI) lives in [`host`].

mod host;

use std::process::ExitCode;

use clap::Parser;

/// Every allocation of the process is counted, to show (on exit) that the
/// stack allocated nothing while it served: see [`host::heap`].
#[global_allocator]
static ALLOCATOR: host::heap::Counting = host::heap::Counting;

fn main() -> ExitCode {
    let args = match host::cli::Args::try_parse() {
        Ok(args) => args,
        Err(err) if !err.use_stderr() => {
            // --help and --version: clap prints them to stdout.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            host::say(format_args!("tapstack: {}", host::cli::one_line(&err)));
            return ExitCode::from(2);
        }
    };
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(msg) => {
            host::say(format_args!("tapstack: {msg}"));
            return ExitCode::from(2);
        }
    };
    match host::run(settings) {
        Ok(stopped) => {
            let name = if stopped.signal == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            let drops = match stopped.tx_dropped {
                0 => String::new(),
                n => format!(" ({n} frames the TAP would not take were dropped)"),
            };
            host::say(format_args!("tapstack: stopped by {name}{drops}"));
            ExitCode::SUCCESS
        }
        Err(err) => {
            host::say(format_args!("tapstack: {err}"));
            ExitCode::from(err.exit_code())
        }
    }
}
