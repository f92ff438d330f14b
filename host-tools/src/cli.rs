//! The command line: raw arguments (clap) and the dispatch to each subcommand.
//! Each subcommand module turns its own arguments into the settings it runs with.

use clap::{Parser, Subcommand};
use tapstack::config::{
    CHARGEN_PORT, DEFAULT_TAP, DISCARD_PORT, ECHO_PORT, STACK_IPV4, STACK_IPV6, UPPER_PORT,
};

use crate::{Error, bench, doctor, serve, tcp, udp};

/// Talks to tapstack with ordinary sockets: clients, a kernel-stack twin
/// server, a benchmark and a setup doctor.
#[derive(Parser, Debug)]
#[command(name = "hostnet", version, about, after_help = examples())]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// TCP client, like nc: stdin to the socket, the socket to stdout.
    #[command(after_help = tcp::examples())]
    Tcp(tcp::Args),
    /// UDP sender: one datagram per argument (or stdin line), one reply each.
    #[command(after_help = udp::examples())]
    Udp(udp::Args),
    /// Serve echo, upper-case, discard and chargen on the host's kernel stack (TCP and UDP).
    #[command(after_help = serve::examples())]
    Serve(serve::Args),
    /// Measure a target: echo throughput, round-trip time, connection rate, concurrency;
    /// discard and chargen throughput.
    #[command(after_help = bench::examples())]
    Bench(bench::Args),
    /// Check the host side of the TAP before a first run.
    #[command(after_help = doctor::examples())]
    Doctor(doctor::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Tcp(args) => tcp::run(args),
        Command::Udp(args) => udp::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Doctor(args) => doctor::run(args),
    }
}

fn examples() -> String {
    let v4 = STACK_IPV4.address();
    let v6 = STACK_IPV6.address();
    let rows = [
        (
            format!("hostnet doctor --tap {DEFAULT_TAP}"),
            "check the host side before starting tapstack",
        ),
        (
            format!("hostnet tcp {v4} {ECHO_PORT}"),
            "type lines, get them back (Ctrl-D ends)",
        ),
        (
            format!("hostnet udp {v4} {UPPER_PORT} MixedCaseString"),
            "prints MIXEDCASESTRING",
        ),
        (
            format!("hostnet tcp {v4} chargen --bytes 740"),
            "the first 10 lines of chargen",
        ),
        (
            "sudo hostnet serve".to_string(),
            "the same services on the kernel's stack",
        ),
        (
            format!("hostnet bench {v4} --vs 127.0.0.1"),
            "tapstack against the kernel, side by side",
        ),
    ];
    let width = rows
        .iter()
        .map(|(command, _)| command.len())
        .max()
        .unwrap_or(0);
    let examples: String = rows
        .iter()
        .map(|(command, what)| format!("  {command:<width$}   {what}\n"))
        .collect();
    format!(
        "The stack (tapstack) answers at {v4} and {v6}: echo on port {ECHO_PORT}, upper-case on port {UPPER_PORT},
discard on port {DISCARD_PORT}, chargen on port {CHARGEN_PORT}.

Examples:
{examples}
Exit codes: 0 success, 1 refused / unreachable / timed out / lost / a failed check, 2 bad usage."
    )
}
