//! `hostnet`: see the library's documentation (`hostnet --help`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let cli = hostnet::cli::Cli::parse();
    match hostnet::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hostnet: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
