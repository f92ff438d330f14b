//! `hostnet` against tapstack on a TAP, each test in its own network
//! namespace (root). Every client runs inside the namespace, so nothing is
//! sent anywhere else; the stack is stopped by its PID when a test ends.

use std::net::IpAddr;
use std::process::Command;

use tapstack::config::{ECHO_PORT, HOST_IPV4, STACK_IPV4, STACK_IPV6, UPPER_PORT};
use tapstack::services::chargen;

use crate::netns::{Netns, StackProcess};
use crate::support::{
    self, assert_consistent, assert_exit, assert_ok, assert_oneway_consistent, chargen_stream,
    json, run, stderr, stdout, test_bytes, upper,
};

/// `hostnet args...` inside `ns`.
fn hostnet(ns: &Netns, args: &[&str]) -> Command {
    let mut command = ns.command(support::hostnet());
    command.args(args);
    command
}

fn v4() -> String {
    STACK_IPV4.address().to_string()
}

fn v6() -> String {
    STACK_IPV6.address().to_string()
}

/// The lessons' sessions reproduced against tapstack, IPv4 and IPv6: the
/// UDP sender prints MIXEDCASESTRING, the TCP client gets every byte back.
#[test]
fn lessons_sessions_against_tapstack() {
    let ns = Netns::new("hn-lessons");
    let stack = StackProcess::start(&ns, &[]);
    let (echo, up) = (ECHO_PORT.to_string(), UPPER_PORT.to_string());

    let out = run(hostnet(&ns, &["udp", &v4(), &up, "MixedCaseString"]), b"");
    assert_ok(&out, "udp upper v4");
    assert_eq!(stdout(&out), "MIXEDCASESTRING\n");
    assert!(
        stderr(&out).contains(&format!("15 bytes from {}:{up} in ", v4())),
        "{}",
        stderr(&out)
    );

    let out = run(hostnet(&ns, &["udp", &v6(), "echo", "one", "two"]), b"");
    assert_ok(&out, "udp echo v6");
    assert_eq!(stdout(&out), "one\ntwo\n");

    let out = run(
        hostnet(&ns, &["tcp", "-v", &v4(), &up, "--send", "MixedCase 42"]),
        b"",
    );
    assert_ok(&out, "tcp upper v4");
    assert_eq!(stdout(&out), "MIXEDCASE 42");
    let from = format!("connected {}:", HOST_IPV4.address());
    assert!(
        stderr(&out).contains(&from),
        "the host side's address and ephemeral port:\n{}",
        stderr(&out)
    );

    let data = test_bytes(200_000, 3);
    let out = run(hostnet(&ns, &["tcp", &v6(), &echo]), &data);
    assert_ok(&out, "tcp echo v6");
    assert!(
        out.stdout == data,
        "200 kB echoed over IPv6 came back different"
    );

    stack.stop_cleanly();
}

/// `hostnet serve` answers the same bytes as tapstack, over TCP and UDP.
#[test]
fn serve_answers_the_same_bytes_as_tapstack() {
    let ns = Netns::new("hn-same");
    let stack = StackProcess::start(&ns, &[]);
    let serve = support::Serve::start(hostnet(
        &ns,
        &[
            "serve",
            "--bind",
            "127.0.0.1",
            "--echo-port",
            "0",
            "--upper-port",
            "0",
        ],
    ));
    let kernel_upper = serve.upper[0];
    let data = test_bytes(100_000, 11);

    let from_stack = run(
        hostnet(&ns, &["tcp", &v4(), &UPPER_PORT.to_string()]),
        &data,
    );
    let from_kernel = run(
        hostnet(&ns, &["tcp", "127.0.0.1", &kernel_upper.port().to_string()]),
        &data,
    );
    assert_ok(&from_stack, "tcp to tapstack");
    assert_ok(&from_kernel, "tcp to hostnet serve");
    assert!(
        from_stack.stdout == from_kernel.stdout,
        "TCP: tapstack and hostnet serve answered differently"
    );
    assert!(
        from_stack.stdout == upper(&data),
        "TCP: not the core's upper-case"
    );

    let line = "The Quick brown fox, 42 {}[] \u{e9}t\u{e9}";
    let from_stack = run(
        hostnet(&ns, &["udp", "-q", &v4(), &UPPER_PORT.to_string(), line]),
        b"",
    );
    let from_kernel = run(
        hostnet(
            &ns,
            &[
                "udp",
                "-q",
                "127.0.0.1",
                &kernel_upper.port().to_string(),
                line,
            ],
        ),
        b"",
    );
    assert_ok(&from_stack, "udp to tapstack");
    assert_ok(&from_kernel, "udp to hostnet serve");
    assert_eq!(
        from_stack.stdout, from_kernel.stdout,
        "UDP: tapstack and hostnet serve answered differently"
    );

    drop(serve);
    stack.stop_cleanly();
}

/// Bench tapstack against the kernel stack (hostnet serve) in one run:
/// both columns add up, and the ratio is there.
#[test]
fn bench_tapstack_vs_kernel_adds_up() {
    let ns = Netns::new("hn-bench");
    let stack = StackProcess::start(&ns, &[]);
    let serve = support::Serve::start(hostnet(
        &ns,
        &[
            "serve",
            "--bind",
            "127.0.0.1",
            "--echo-port",
            "0",
            "--upper-port",
            "0",
        ],
    ));
    let kernel = serve.echo[0].to_string();
    let out = run(
        hostnet(
            &ns,
            &[
                "bench",
                &v4(),
                "--vs",
                &kernel,
                "--label",
                "tapstack",
                "--vs-label",
                "kernel",
                "--size",
                "2M",
                "--count",
                "200",
                "--duration",
                "300ms",
                "--clients",
                "4",
                "--rounds",
                "2",
                "--json",
            ],
        ),
        b"",
    );
    assert_ok(&out, "bench tapstack vs kernel");
    let report = json(&out);
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets[0]["label"], "tapstack");
    assert_eq!(targets[1]["label"], "kernel");
    for t in targets {
        assert_consistent(t, 2_000_000, 200, 4, 2);
    }
    assert!(
        report["ratio"]["tcp_throughput"].as_f64().is_some(),
        "{}",
        report["ratio"]
    );
    drop(serve);
    stack.stop_cleanly();
}

/// tapstack's discard and chargen through the clients, by service name, over
/// IPv4 and IPv6: discard takes every byte and closes on FIN; chargen sends
/// the pattern from byte 0 and closes on FIN; UDP chargen answers the k-th
/// datagram of its one socket with line k; UDP discard answers nothing.
#[test]
fn discard_and_chargen_against_tapstack() {
    let ns = Netns::new("hn-dc");
    let stack = StackProcess::start(&ns, &[]);

    let data = test_bytes(300_000, 9);
    let out = run(hostnet(&ns, &["tcp", "-v", &v4(), "discard"]), &data);
    assert_ok(&out, "tcp discard v4");
    assert_eq!(stdout(&out), "", "discard sends nothing");
    assert!(
        stderr(&out).contains("sent 300000 bytes, received 0 bytes")
            && stderr(&out).contains("closed by peer"),
        "{}",
        stderr(&out)
    );

    let out = run(
        hostnet(&ns, &["tcp", &v6(), "chargen", "--bytes", "200000"]),
        b"",
    );
    assert_ok(&out, "tcp chargen v6 --bytes");
    assert!(
        out.stdout == chargen_stream(200_000),
        "not the first 200000 bytes of the pattern ({} bytes)",
        out.stdout.len()
    );

    // A FIN ends chargen's stream (else this would read until the bound).
    let out = run(hostnet(&ns, &["tcp", &v4(), "chargen", "--send", "x"]), b"");
    assert_ok(&out, "tcp chargen v4, half-closed");
    assert!(
        out.stdout == chargen_stream(out.stdout.len()),
        "what came before the close is the pattern"
    );

    let out = run(
        hostnet(&ns, &["udp", "-q", &v4(), "chargen", "a", "b", "c"]),
        b"",
    );
    assert_ok(&out, "udp chargen v4");
    assert_eq!(
        out.stdout,
        [chargen::line(0), chargen::line(1), chargen::line(2)].concat()
    );
    let out = run(hostnet(&ns, &["udp", "-q", &v6(), "chargen", "x"]), b"");
    assert_ok(&out, "udp chargen v6");
    assert_eq!(out.stdout, chargen::line(3), "one socket for both families");

    let out = run(hostnet(&ns, &["udp", &v4(), "discard", "x", "y"]), b"");
    assert_ok(&out, "udp discard v4 (port 9 expects no reply)");
    assert_eq!(
        stderr(&out).matches("no reply expected").count(),
        2,
        "{}",
        stderr(&out)
    );
    stack.stop_cleanly();
}

/// Bench discard and chargen, tapstack against the kernel (hostnet serve on
/// the default ports 9 and 19, inside the namespace): both columns deliver
/// and verify every byte, one rate per round.
#[test]
fn bench_discard_and_chargen_tapstack_vs_kernel() {
    let ns = Netns::new("hn-dcb");
    let stack = StackProcess::start(&ns, &[]);
    let serve = support::Serve::start(hostnet(
        &ns,
        &[
            "serve",
            "--bind",
            "127.0.0.1",
            "--echo-port",
            "0",
            "--upper-port",
            "0",
        ],
    ));
    assert_eq!(
        (serve.discard[0].port(), serve.chargen[0].port()),
        (9, 19),
        "the stack's ports"
    );
    let kernel = serve.echo[0].to_string();
    let out = run(
        hostnet(
            &ns,
            &[
                "bench",
                &v4(),
                "--vs",
                &kernel,
                "--label",
                "tapstack",
                "--vs-label",
                "kernel",
                "--only",
                "tcp,discard,chargen",
                "--size",
                "2M",
                "--oneway-size",
                "20M",
                "--rounds",
                "2",
                "--json",
            ],
        ),
        b"",
    );
    assert_ok(&out, "bench discard,chargen tapstack vs kernel");
    let report = json(&out);
    let targets = report["targets"].as_array().unwrap();
    for t in targets {
        assert_oneway_consistent(t, 20_000_000, 2);
        assert_eq!(t["tcp"]["bytes_verified"], 2_000_000, "{t}");
    }
    for key in ["tcp_throughput", "discard_throughput", "chargen_throughput"] {
        assert!(
            report["ratio"][key].as_f64().is_some_and(|r| r > 0.0),
            "ratio {key}: {}",
            report["ratio"]
        );
    }
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(", 20000000 bytes discarded"), "{err}");
    stack.stop_cleanly();
}

/// tapstack stops answering in the middle of a bench (SIGSTOP after the TCP
/// result): one clear line, exit 1, the TCP result kept, no hang; the stack
/// goes on once continued.
#[test]
fn bench_survives_the_stack_stopping() {
    let ns = Netns::new("hn-stop");
    let stack = StackProcess::start(&ns, &[]);
    let pid = libc::pid_t::try_from(stack.pid()).unwrap();
    let mut bench = support::Running::start(hostnet(
        &ns,
        &[
            "bench",
            &v4(),
            "-v",
            "--size",
            "1M",
            "--count",
            "100",
            "--timeout",
            "300ms",
            "--rounds",
            "1",
        ],
    ));
    bench.wait_for_stderr("hostnet: tcp throughput");
    // SAFETY: kill has no memory effects; the PID is the stack we started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let out = bench.finish();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_exit(
        &out,
        1,
        &["stopped answering", "results so far above"],
        "bench on a stopped stack",
    );
    assert!(
        stdout(&out).contains("1000000 of 1000000"),
        "TCP result kept:\n{}",
        stdout(&out)
    );
    let after = run(hostnet(&ns, &["udp", &v4(), "echo", "still there"]), b"");
    assert_ok(&after, "the stack answers again once continued");
    stack.stop_cleanly();
}

/// With no stack: no route, an unknown host, and a TAP nobody answers on
/// (connect and reply timeouts), each one clear line and exit 1.
#[test]
fn unreachable_silent_and_unknown_targets() {
    let ns = Netns::new("hn-unreach");
    let out = run(hostnet(&ns, &["tcp", &v4(), "7", "--send", "x"]), b"");
    assert_exit(
        &out,
        1,
        &["network unreachable", "hostnet doctor"],
        "no route",
    );
    let out = run(
        hostnet(&ns, &["udp", "no-such-host.invalid", "7", "x"]),
        b"",
    );
    assert_exit(
        &out,
        1,
        &["cannot resolve host \"no-such-host.invalid\""],
        "unknown host",
    );

    // A TAP with the host's address but no stack attached: frames go nowhere.
    ns.ip(&["tuntap", "add", "name", "tap0", "mode", "tap"]);
    ns.ip(&["link", "set", "tap0", "up"]);
    ns.ip(&[
        "addr",
        "add",
        &format!("{}/{}", HOST_IPV4.address(), HOST_IPV4.prefix_len()),
        "dev",
        "tap0",
    ]);
    let out = run(
        hostnet(
            &ns,
            &[
                "tcp",
                &v4(),
                "7",
                "--connect-timeout",
                "300ms",
                "--send",
                "x",
            ],
        ),
        b"",
    );
    assert_exit(
        &out,
        1,
        &["timed out after 300 ms connecting to"],
        "silent TCP",
    );
    let out = run(
        hostnet(&ns, &["udp", &v4(), "7", "--timeout", "300ms", "x"]),
        b"",
    );
    assert_exit(
        &out,
        1,
        &[
            "got no reply within 300 ms",
            "1 of 1 datagrams got no reply",
        ],
        "silent UDP",
    );
    let out = run(
        hostnet(
            &ns,
            &["bench", &v4(), "--timeout", "300ms", "--rounds", "1"],
        ),
        b"",
    );
    assert_exit(
        &out,
        1,
        &["results so far above"],
        "bench on a silent target",
    );
    assert!(
        stdout(&out).contains("skipped"),
        "later measurements skipped:\n{}",
        stdout(&out)
    );
    assert!(v4().parse::<IpAddr>().is_ok());
}
