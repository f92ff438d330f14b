//! Character generator (RFC 864): the one-way source.
//!
//! Over TCP the stack sends the pattern below for as long as the client
//! reads, and throws away whatever the client sends. Over UDP each datagram
//! received is answered with one line of the pattern (as BSD inetd does; the
//! RFC allows any length from 0 to 512), the next line for the next datagram.
//!
//! The pattern is the classic one: lines of [`LINE_CHARS`] printable ASCII
//! characters (codes 32 to 126) and CR LF, each line starting one character
//! further along the 95 printable ones. It repeats every [`PERIOD`] bytes, so
//! a client can check every byte it receives: byte `i` of a TCP stream is
//! `PATTERN[i % PERIOD]`.

/// Name shown to people.
pub const NAME: &str = "chargen";

/// Printable characters per line, as in RFC 864's example.
pub const LINE_CHARS: usize = 72;
/// Bytes per line: the characters and CR LF.
pub const LINE_LEN: usize = LINE_CHARS + 2;
/// Printable ASCII characters, `' '` to `'~'`.
const PRINTABLE: usize = 95;
/// Length of the repeating pattern: 95 lines, one per starting character.
pub const PERIOD: usize = PRINTABLE * LINE_LEN;

/// The whole pattern, built at compile time (read-only data: flash on a
/// microcontroller, not RAM). Filling a buffer is then a memory copy.
pub static PATTERN: [u8; PERIOD] = pattern();

const fn pattern() -> [u8; PERIOD] {
    let mut out = [0u8; PERIOD];
    let mut line = 0;
    while line < PRINTABLE {
        let mut col = 0;
        while col < LINE_CHARS {
            out[line * LINE_LEN + col] = b' ' + ((line + col) % PRINTABLE) as u8;
            col += 1;
        }
        out[line * LINE_LEN + LINE_CHARS] = b'\r';
        out[line * LINE_LEN + LINE_CHARS + 1] = b'\n';
        line += 1;
    }
    out
}

/// Fills `out` with the stream from byte `offset` on; returns the offset of
/// the byte after it (kept below [`PERIOD`]).
pub fn fill(offset: usize, out: &mut [u8]) -> usize {
    let mut at = offset % PERIOD;
    let mut done = 0;
    while done < out.len() {
        let n = (PERIOD - at).min(out.len() - done);
        out[done..done + n].copy_from_slice(&PATTERN[at..at + n]);
        done += n;
        at = (at + n) % PERIOD;
    }
    at
}

/// Line `index` of the pattern (modulo 95), CR LF included: the answer to
/// the `index`-th UDP datagram.
pub fn line(index: usize) -> &'static [u8] {
    let start = (index % PRINTABLE) * LINE_LEN;
    &PATTERN[start..start + LINE_LEN]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_lines_are_the_rfc_example() {
        // RFC 864 starts its example at '!'; the full rotation starts at ' '.
        assert_eq!(
            line(1),
            b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
        );
        assert_eq!(&line(0)[..3], b" !\"");
        assert_eq!(&line(94)[..3], b"~ !");
        assert_eq!(line(95), line(0));
    }

    #[test]
    fn fill_continues_the_stream_across_calls_and_periods() {
        let mut whole = [0u8; 3 * PERIOD + 100];
        assert_eq!(fill(0, &mut whole), 100);
        for (i, b) in whole.iter().enumerate() {
            assert_eq!(*b, PATTERN[i % PERIOD], "byte {i}");
        }
        let mut parts = [0u8; 3 * PERIOD + 100];
        let mut at = 0;
        for chunk in parts.chunks_mut(997) {
            at = fill(at, chunk);
        }
        assert_eq!(parts, whole);
    }

    #[test]
    fn every_line_is_printable_then_crlf() {
        for i in 0..PRINTABLE {
            let l = line(i);
            assert!(l[..LINE_CHARS].iter().all(|b| (32..=126).contains(b)));
            assert_eq!(&l[LINE_CHARS..], b"\r\n");
            assert_eq!(l[0], b' ' + i as u8);
        }
    }
}
