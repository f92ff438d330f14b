//! Every subcommand against `hostnet serve` on loopback: no root needed, and
//! no traffic leaves 127.0.0.1 and ::1.

use std::net::{TcpListener, UdpSocket};

use crate::support::{
    self, assert_consistent, assert_exit, assert_ok, command, json, run, serve_loopback, stderr,
    stdout, test_bytes, upper,
};

/// The lessons' UDP session: one datagram, its upper-cased reply and a
/// round-trip time; several arguments, several datagrams; stdin lines too.
#[test]
fn udp_sessions() {
    let serve = serve_loopback();
    let (up4, echo6) = (serve.upper[0], serve.echo[1]);
    let out = run(
        command(&[
            "udp",
            "127.0.0.1",
            &up4.port().to_string(),
            "MixedCaseString",
        ]),
        b"",
    );
    assert_ok(&out, "udp upper");
    assert_eq!(stdout(&out), "MIXEDCASESTRING\n");
    assert!(
        stderr(&out).contains("15 bytes from 127.0.0.1:"),
        "{}",
        stderr(&out)
    );

    let out = run(
        command(&[
            "udp",
            "::1",
            &echo6.port().to_string(),
            "one",
            "two",
            "three",
        ]),
        b"",
    );
    assert_ok(&out, "udp echo v6");
    assert_eq!(stdout(&out), "one\ntwo\nthree\n");

    let out = run(
        command(&["udp", "-q", "[::1]", &up4.port().to_string()]),
        b"first line\r\n\nsecond\n",
    );
    assert_ok(&out, "udp lines from stdin");
    assert_eq!(stdout(&out), "FIRST LINE\nSECOND\n");
    assert_eq!(stderr(&out), "", "-q prints only replies");
}

/// The lessons' TCP client: --send, piped binary data in both families and
/// to a host name, CRLF like telnet, and what -v shows.
#[test]
fn tcp_sessions() {
    let serve = serve_loopback();
    let (echo4, up4, up6) = (serve.echo[0], serve.upper[0], serve.upper[1]);

    let out = run(
        command(&[
            "tcp",
            "127.0.0.1",
            &up4.port().to_string(),
            "--send",
            "MixedCase 42",
        ]),
        b"",
    );
    assert_ok(&out, "tcp --send");
    assert_eq!(stdout(&out), "MIXEDCASE 42");

    let data = test_bytes(300_000, 7);
    let out = run(command(&["tcp", "::1", &up6.port().to_string()]), &data);
    assert_ok(&out, "tcp piped, v6");
    assert!(
        out.stdout == upper(&data),
        "upper-case of 300 kB came back different"
    );

    let out = run(
        command(&["tcp", "localhost", &echo4.port().to_string(), "-4"]),
        &data,
    );
    assert_ok(&out, "tcp piped to a host name");
    assert!(out.stdout == data, "echo of 300 kB came back different");

    let out = run(
        command(&["tcp", "-C", "127.0.0.1", &up4.port().to_string()]),
        b"a\nb\r\n",
    );
    assert_ok(&out, "tcp -C");
    assert_eq!(out.stdout, b"A\r\nB\r\n");

    let out = run(
        command(&[
            "tcp",
            "-v",
            "127.0.0.1",
            &echo4.port().to_string(),
            "--send",
            "hello",
        ]),
        b"",
    );
    assert_ok(&out, "tcp -v");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("-> {echo4} in ")),
        "peer and time to connect:\n{err}"
    );
    assert!(
        err.contains("chosen by the kernel"),
        "the ephemeral port:\n{err}"
    );
    assert!(
        err.contains("sent 5 bytes, received 5 bytes"),
        "bytes each way:\n{err}"
    );
}

/// `serve` stops on SIGINT, with exit 0 and what it served.
#[test]
fn serve_stops_cleanly_and_reports() {
    let serve = serve_loopback();
    let port = serve.echo[0].port().to_string();
    assert_ok(
        &run(command(&["tcp", "127.0.0.1", &port, "--send", "abc"]), b""),
        "tcp",
    );
    assert_ok(
        &run(command(&["udp", "127.0.0.1", &port, "abcd"]), b""),
        "udp",
    );
    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(
            "stopped: 1 tcp connections (0 turned away), 3 tcp bytes, 1 datagrams (4 bytes)"
        ),
        "{err}"
    );
}

/// A port already taken is one clear line and exit 1; a bad port is usage (2).
#[test]
fn serve_bad_ports() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(
        command(&[
            "serve",
            "--bind",
            "127.0.0.1",
            "--echo-port",
            &port,
            "--upper-port",
            "0",
        ]),
        b"",
    );
    assert_exit(&out, 1, &["already in use"], "serve on a taken port");
    assert_eq!(
        stderr(&out).lines().count(),
        1,
        "one line: {}",
        stderr(&out)
    );
    let out = run(command(&["serve", "--echo-port", "70000"]), b"");
    assert_exit(&out, 2, &["70000"], "serve on a bad port");
}

/// Bench against two targets in one run: JSON whose numbers add up, and the
/// ratio of each measurement.
#[test]
fn bench_results_add_up() {
    let serve = serve_loopback();
    let (a, b) = (serve.echo[0].to_string(), serve.echo[1].to_string());
    let out = run(
        command(&[
            "bench",
            &a,
            "--vs",
            &b,
            "--size",
            "3M",
            "--count",
            "300",
            "--duration",
            "300ms",
            "--clients",
            "4",
            "--rounds",
            "2",
            "--json",
        ]),
        b"",
    );
    assert_ok(&out, "bench --json");
    let report = json(&out);
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for t in targets {
        assert_consistent(t, 3_000_000, 300, 4, 2);
    }
    for key in [
        "tcp_throughput",
        "udp_p50",
        "connect_rate",
        "concurrency_throughput",
    ] {
        assert!(
            report["ratio"][key].as_f64().is_some_and(|r| r > 0.0),
            "ratio {key}: {}",
            report["ratio"]
        );
    }
    assert_eq!(stderr(&out), "", "silent when piped");
}

/// The plain table: one column per target, named, and the ratio.
#[test]
fn bench_table() {
    let serve = serve_loopback();
    let (a, b) = (serve.echo[0].to_string(), serve.echo[1].to_string());
    let out = run(
        command(&[
            "bench",
            &a,
            "--vs",
            &b,
            "--label",
            "v4",
            "--vs-label",
            "v6",
            "--size",
            "1M",
            "--count",
            "50",
            "--duration",
            "100ms",
            "--clients",
            "2",
            "--rounds",
            "1",
        ]),
        b"",
    );
    assert_ok(&out, "bench table");
    let table = stdout(&out);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("v4") && header.contains("v6") && header.contains("ratio"),
        "{table}"
    );
    for row in [
        "tcp throughput",
        "udp round trip p50",
        "p99",
        "lost",
        "connect rate",
        "refused",
        "concurrency, 2 clients",
    ] {
        assert!(table.contains(row), "row {row:?} missing:\n{table}");
    }
    assert!(
        table.contains("1000000 of 1000000"),
        "bytes verified:\n{table}"
    );
}

/// A target that stops answering mid-run (SIGSTOP after the TCP
/// measurement): one clear line, exit 1, the TCP result kept, no hang.
#[test]
fn bench_keeps_partial_results_when_the_target_stops() {
    let serve = serve_loopback();
    let target = serve.echo[0].to_string();
    let mut bench = support::Running::start(command(&[
        "bench",
        &target,
        "-v",
        "--size",
        "2M",
        "--count",
        "100",
        "--timeout",
        "300ms",
        "--rounds",
        "1",
    ]));
    // `-v` prints each result on stderr as soon as it is measured.
    bench.wait_for_stderr("hostnet: tcp throughput");
    serve.signal(libc::SIGSTOP);
    let out = bench.finish();
    serve.signal(libc::SIGCONT);
    assert_exit(
        &out,
        1,
        &["stopped answering", "results so far above"],
        "bench on a stopped target",
    );
    let last = stderr(&out).lines().last().unwrap_or_default().to_owned();
    assert!(
        last.starts_with("hostnet: bench: "),
        "one clear last line: {last}"
    );
    let table = stdout(&out);
    assert!(
        table.contains("2000000 of 2000000"),
        "the TCP result is kept:\n{table}"
    );
    assert!(
        table.contains("skipped"),
        "the rest is marked skipped:\n{table}"
    );
}

/// Refused, lost and silent: clear lines and nc's exit codes, never a hang.
#[test]
fn errors_are_one_clear_line() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = run(command(&["tcp", "127.0.0.1", &closed, "--send", "x"]), b"");
    assert_exit(
        &out,
        1,
        &["hostnet: connection refused by 127.0.0.1:"],
        "tcp refused",
    );
    assert_eq!(stderr(&out).lines().count(), 1);

    let closed_udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = run(command(&["udp", "127.0.0.1", &closed_udp, "x"]), b"");
    assert_exit(
        &out,
        1,
        &["port unreachable", "nothing listens"],
        "udp refused",
    );

    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let out = run(
        command(&["udp", "127.0.0.1", &port, "--timeout", "200ms", "a", "b"]),
        b"",
    );
    assert_exit(
        &out,
        1,
        &[
            "got no reply within 200 ms",
            "2 of 2 datagrams got no reply",
        ],
        "udp lost",
    );

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = run(
        command(&[
            "tcp",
            "127.0.0.1",
            &port,
            "--timeout",
            "200ms",
            "--send",
            "x",
        ]),
        b"",
    );
    assert_exit(&out, 1, &["sent nothing for 200 ms"], "tcp silent");

    let out = run(
        command(&[
            "bench",
            &format!("127.0.0.1:{closed}"),
            "--rounds",
            "1",
            "--duration",
            "100ms",
        ]),
        b"",
    );
    assert_exit(
        &out,
        1,
        &["connection refused", "results so far above"],
        "bench refused",
    );

    for args in [
        &["tcp", "127.0.0.1", "0"][..],
        &["udp", "127.0.0.1", "65536", "x"],
        &["tcp", "127.0.0.1"],
        &["bench", "127.0.0.1:x"],
    ] {
        let out = run(command(args), b"");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} is bad usage: {}",
            stderr(&out)
        );
    }
}

/// `--help` shows examples with the stack's addresses, from the library.
#[test]
fn help_has_examples() {
    let v4 = tapstack::config::STACK_IPV4.address().to_string();
    for args in [
        &["--help"][..],
        &["tcp", "--help"],
        &["udp", "--help"],
        &["serve", "--help"],
        &["bench", "--help"],
        &["doctor", "--help"],
    ] {
        let out = run(command(args), b"");
        assert_ok(&out, "help");
        let text = stdout(&out);
        assert!(text.contains("Examples:"), "{args:?}:\n{text}");
        assert!(
            text.contains(&v4) || args[0] == "serve" || args[0] == "doctor",
            "{args:?}:\n{text}"
        );
    }
}
