//! Upper-case: ASCII `a`-`z` become `A`-`Z`; every other byte (digits,
//! punctuation, CR/LF, non-ASCII UTF-8 bytes, binary) is left unchanged.
//!
//! Because it maps each byte on its own, it works on any chunking of a TCP
//! stream: a line typed in telnet and a binary file from nc alike.

/// Name shown to people.
pub const NAME: &str = "upper-case";

/// Upper-cases ASCII letters in place.
pub fn to_upper(bytes: &mut [u8]) {
    bytes.make_ascii_uppercase();
}

#[cfg(test)]
mod tests {
    use super::to_upper;

    #[test]
    fn letters_become_capitals() {
        let mut line = *b"MixedCaseString\r\n";
        to_upper(&mut line);
        assert_eq!(&line, b"MIXEDCASESTRING\r\n");
    }

    #[test]
    fn only_ascii_letters_change() {
        // UTF-8 "héllo wörld 42!" : the bytes of é and ö stay as they are.
        let mut text = *b"h\xc3\xa9llo w\xc3\xb6rld 42!{}[]`~@";
        to_upper(&mut text);
        assert_eq!(&text, b"H\xc3\xa9LLO W\xc3\xb6RLD 42!{}[]`~@");
    }

    #[test]
    fn every_byte_value() {
        let mut all: [u8; 256] = core::array::from_fn(|i| i as u8);
        to_upper(&mut all);
        for (i, &b) in all.iter().enumerate() {
            // Spelled out from the ASCII table (0x61 'a' ..= 0x7a 'z', minus 0x20),
            // independent of the library call under test.
            let expected = match i as u8 {
                lower @ 0x61..=0x7a => lower - 0x20,
                other => other,
            };
            assert_eq!(b, expected, "byte {i:#04x}");
        }
    }

    #[test]
    fn chunking_does_not_matter() {
        let whole = *b"the quick brown fox jumps over the lazy dog";
        let mut at_once = whole;
        to_upper(&mut at_once);
        let mut by_chunks = whole;
        for chunk in by_chunks.chunks_mut(3) {
            to_upper(chunk);
        }
        assert_eq!(at_once, by_chunks);
        // Idempotent: upper-casing twice changes nothing more.
        to_upper(&mut by_chunks);
        assert_eq!(at_once, by_chunks);
    }
}
