//! Echo (RFC 862): every byte and every datagram comes back unchanged.

/// Name shown to people.
pub const NAME: &str = "echo";

/// The echo transform leaves the bytes as they are.
pub fn transform(_bytes: &mut [u8]) {}

#[cfg(test)]
mod tests {
    #[test]
    fn echo_keeps_every_byte() {
        let original: [u8; 256] = core::array::from_fn(|i| i as u8);
        let mut bytes = original;
        super::transform(&mut bytes);
        assert_eq!(bytes, original);
    }
}
