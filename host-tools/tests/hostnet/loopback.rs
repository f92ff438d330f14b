//! Every subcommand against `hostnet serve` on loopback: no root needed, and
//! no traffic leaves 127.0.0.1 and ::1.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::thread;

use tapstack::services::chargen;

use crate::support::{
    self, assert_consistent, assert_exit, assert_ok, assert_oneway_consistent, chargen_stream,
    command, json, run, serve_loopback, stderr, stdout, test_bytes, upper,
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

/// Discard and chargen through the clients, as the stack serves them: TCP
/// discard takes every byte and closes on the client's FIN; TCP chargen
/// sends the pattern from byte 0 and closes on FIN; UDP chargen answers the
/// k-th datagram of each socket with line k; UDP discard answers nothing.
#[test]
fn discard_and_chargen_sessions() {
    let serve = serve_loopback();
    let (discard4, chargen4, chargen6) = (serve.discard[0], serve.chargen[0], serve.chargen[1]);

    let data = test_bytes(300_000, 5);
    let out = run(
        command(&["tcp", "-v", "127.0.0.1", &discard4.port().to_string()]),
        &data,
    );
    assert_ok(&out, "tcp to discard");
    assert_eq!(stdout(&out), "", "discard sends nothing");
    assert!(
        stderr(&out).contains("sent 300000 bytes, received 0 bytes")
            && stderr(&out).contains("closed by peer"),
        "{}",
        stderr(&out)
    );

    let out = run(
        command(&[
            "tcp",
            "-v",
            "::1",
            &chargen6.port().to_string(),
            "--bytes",
            "100000",
        ]),
        b"",
    );
    assert_ok(&out, "tcp chargen --bytes");
    assert!(
        out.stdout == chargen_stream(100_000),
        "not the first 100000 bytes of the pattern ({} bytes)",
        out.stdout.len()
    );
    assert!(
        stderr(&out).contains("closed by us at --bytes"),
        "{}",
        stderr(&out)
    );

    // A FIN ends chargen's stream (else this would read until the bound).
    let out = run(
        command(&[
            "tcp",
            "127.0.0.1",
            &chargen4.port().to_string(),
            "--send",
            "x",
        ]),
        b"",
    );
    assert_ok(&out, "tcp chargen, half-closed");
    assert!(
        out.stdout == chargen_stream(out.stdout.len()),
        "what came before the close is the pattern"
    );

    let out = run(
        command(&[
            "udp",
            "127.0.0.1",
            &discard4.port().to_string(),
            "--no-reply",
            "x",
            "yz",
        ]),
        b"",
    );
    assert_ok(&out, "udp discard");
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out).matches("no reply expected").count(),
        2,
        "{}",
        stderr(&out)
    );

    // UDP chargen's replies below also tell that discard has taken these: the
    // server reads discard's socket before chargen's in each wake, and
    // loopback queues a datagram before send returns.
    let out = run(
        command(&[
            "udp",
            "-q",
            "127.0.0.1",
            &chargen4.port().to_string(),
            "a",
            "b",
            "c",
        ]),
        b"",
    );
    assert_ok(&out, "udp chargen");
    assert_eq!(
        out.stdout,
        [chargen::line(0), chargen::line(1), chargen::line(2)].concat(),
        "lines 0, 1, 2, each ending in its own CR LF"
    );
    let out = run(
        command(&["udp", "-q", "::1", &chargen6.port().to_string(), "x"]),
        b"",
    );
    assert_ok(&out, "udp chargen, the other socket");
    assert_eq!(out.stdout, chargen::line(0), "counted per socket");

    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
    // 300000 over TCP discard, 1 sent to TCP chargen, 3 in UDP datagrams.
    assert!(err.contains(", 300004 bytes discarded"), "{err}");
}

/// Bench discard and chargen against two targets: every byte delivered and
/// verified, one rate per round, the ratios; the server counts the same
/// bytes; and the table shows the rows.
#[test]
fn bench_discard_and_chargen_add_up() {
    let serve = serve_loopback();
    let (a, b) = (serve.echo[0].to_string(), serve.echo[1].to_string());
    let (discard, chargen) = (
        serve.discard[0].port().to_string(),
        serve.chargen[0].port().to_string(),
    );
    let out = run(
        command(&[
            "bench",
            &a,
            "--vs",
            &b,
            "--discard-port",
            &discard,
            "--chargen-port",
            &chargen,
            "--only",
            "discard,chargen",
            "--oneway-size",
            "30M",
            "--rounds",
            "3",
            "--json",
        ]),
        b"",
    );
    assert_ok(&out, "bench discard,chargen --json");
    let report = json(&out);
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    for t in targets {
        assert_oneway_consistent(t, 30_000_000, 3);
        assert!(t.get("tcp").is_none(), "only what was asked for: {t}");
    }
    for key in ["discard_throughput", "chargen_throughput"] {
        assert!(
            report["ratio"][key].as_f64().is_some_and(|r| r > 0.0),
            "ratio {key}: {}",
            report["ratio"]
        );
    }
    assert_eq!(report["settings"]["oneway_size"], 30_000_000);

    let out = run(
        command(&[
            "bench",
            &a,
            "--discard-port",
            &discard,
            "--chargen-port",
            &chargen,
            "--only",
            "chargen,discard",
            "--oneway-size",
            "1M",
            "--rounds",
            "2",
        ]),
        b"",
    );
    assert_ok(&out, "bench discard,chargen table");
    let table = stdout(&out);
    // Each row's name: what comes before the first two spaces, indent aside.
    let rows: Vec<&str> = table
        .lines()
        .map(|l| l.trim_start().split("  ").next().unwrap())
        .collect();
    assert_eq!(
        rows[1..7],
        [
            "discard, host to target",
            "bytes delivered",
            "rounds, Gbit/s",
            "chargen, target to host",
            "bytes verified",
            "rounds, Gbit/s",
        ],
        "{table}"
    );
    assert_eq!(table.matches("1000000 of 1000000").count(), 2, "{table}");
    assert!(table.contains("Gbit/s = 8 x payload bytes / s"), "{table}");

    let (code, err) = serve.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(", 61000000 bytes discarded"),
        "the server took every byte the bench sent (2 x 30 MB + 1 MB): {err}"
    );
}

/// A chargen that sends one wrong byte: the bench names its offset and both
/// values, exit 1. A discard that answers: named too.
#[test]
fn bench_catches_a_wrong_chargen_byte_and_a_talking_discard() {
    const WRONG_AT: usize = 100_000;
    let fake_chargen = TcpListener::bind("127.0.0.1:0").unwrap();
    let chargen_port = fake_chargen.local_addr().unwrap().port();
    let mut stream = chargen_stream(300_000);
    let right = stream[WRONG_AT];
    stream[WRONG_AT] = 0;
    let server = thread::spawn(move || {
        let (mut s, _) = fake_chargen.accept().unwrap();
        let _ = s.write_all(&stream); // the bench may reset it once it saw enough
    });
    let out = run(
        command(&[
            "bench",
            "127.0.0.1",
            "--chargen-port",
            &chargen_port.to_string(),
            "--only",
            "chargen",
            "--oneway-size",
            "1M",
            "--rounds",
            "1",
        ]),
        b"",
    );
    let expected = format!(
        "byte 100000 from 127.0.0.1:{chargen_port} is wrong: expected {right:#04x} '{}', got 0x00 (is it a chargen service?)",
        right as char
    );
    assert_exit(&out, 1, &[&expected], "bench on a wrong chargen");
    server.join().unwrap();

    let fake_discard = TcpListener::bind("127.0.0.1:0").unwrap();
    let discard_port = fake_discard.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = fake_discard.accept().unwrap();
        s.write_all(b"hello").unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    });
    let out = run(
        command(&[
            "bench",
            "127.0.0.1",
            "--discard-port",
            &discard_port.to_string(),
            "--only",
            "discard",
            "--oneway-size",
            "1M",
            "--rounds",
            "1",
        ]),
        b"",
    );
    assert_exit(
        &out,
        1,
        &[&format!(
            "127.0.0.1:{discard_port} sent 5 bytes back; a discard service sends nothing"
        )],
        "bench on a talking discard",
    );
    server.join().unwrap();
}

/// `--samples`: every answered datagram's round trip, one line each, under
/// its target's label, as many as the JSON says were answered.
#[test]
fn bench_writes_every_round_trip_sample() {
    let serve = serve_loopback();
    let (a, b) = (serve.echo[0].to_string(), serve.echo[1].to_string());
    let path = std::env::temp_dir().join(format!("hostnet-samples-{}.tsv", std::process::id()));
    let out = run(
        command(&[
            "bench",
            &a,
            "--vs",
            &b,
            "--label",
            "first",
            "--vs-label",
            "second",
            "--only",
            "udp",
            "--count",
            "40",
            "--rounds",
            "2",
            "--samples",
            path.to_str().unwrap(),
            "--json",
        ]),
        b"",
    );
    assert_ok(&out, "bench --samples");
    let report = json(&out);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("# target\tround_trip_us"));
    let samples: Vec<(&str, f64)> = lines
        .map(|l| {
            let (label, us) = l.split_once('\t').unwrap();
            (label, us.parse().unwrap())
        })
        .collect();
    for (i, label) in ["first", "second"].iter().enumerate() {
        let answered = report["targets"][i]["udp"]["answered"].as_u64().unwrap();
        let mine: Vec<f64> = samples
            .iter()
            .filter(|(l, _)| l == label)
            .map(|&(_, us)| us)
            .collect();
        assert_eq!(mine.len() as u64, answered, "{label}");
        assert!(mine.iter().all(|&us| us > 0.0), "{label}: {mine:?}");
        let max = report["targets"][i]["udp"]["max_us"].as_f64().unwrap();
        let top = mine.iter().copied().fold(0.0, f64::max);
        assert!(
            (top - max).abs() < 0.11,
            "{label}: max {max} µs, samples up to {top}"
        );
    }
    assert_eq!(samples.len(), 80, "no other lines");
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
        for key in ["discard", "chargen"] {
            assert!(t.get(key).is_none(), "{key} runs only when asked for: {t}");
        }
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

    let out = run(command(&["udp", "127.0.0.1", "daytime", "x"]), b"");
    assert_exit(
        &out,
        2,
        &["\"daytime\"", "or echo / upper / discard / chargen"],
        "an unknown service name",
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
