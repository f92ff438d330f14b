//! Sizes, durations and rates, as people type and read them.
//!
//! Sizes are decimal like network rates (`100M` is 100,000,000 bytes, so MB/s
//! and Mbit/s differ by exactly 8); `KiB`, `MiB` and `GiB` are binary.

use std::time::Duration;

/// Parses a byte count: `1000`, `64K`, `100M`, `1G` (decimal, an optional
/// trailing `B`), or `64KiB`, `1MiB`, `1GiB` (binary).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: expected a size like 1000, 64K, 100M or 1G")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a size like 1000, 64K, 100M or 1G"))?;
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// Parses a duration: `2` or `2s` (seconds, fractions allowed), `500ms`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("{s:?}: expected a duration like 2s, 500ms or 1.5");
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

/// A duration for people: `83 µs`, `1.25 ms`, `300 ms`, `2 s`.
pub fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{} ms", two_places(micros / 1e3))
    } else {
        format!("{} s", two_places(micros / 1e6))
    }
}

/// At most two decimals, without trailing zeros: `1.25`, `1.5`, `300`.
fn two_places(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Bytes per second as MB/s (decimal), with a precision that suits its size.
pub fn fmt_rate(bytes_per_sec: f64) -> String {
    let mb = bytes_per_sec / 1e6;
    if mb >= 100.0 {
        format!("{mb:.0} MB/s")
    } else if mb >= 10.0 {
        format!("{mb:.1} MB/s")
    } else {
        format!("{mb:.2} MB/s")
    }
}

/// Bytes per second as Gbit/s.
pub fn fmt_gbits(bytes_per_sec: f64) -> String {
    format!("{:.2} Gbit/s", bytes_per_sec * 8.0 / 1e9)
}

/// A byte count for people: `100 MB` when round, else the exact number.
pub fn fmt_bytes(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{} MB", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{} kB", n / 1_000)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("64K"), Ok(64_000));
        assert_eq!(parse_size("100M"), Ok(100_000_000));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("1g"), Ok(1_000_000_000));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("7B"), Ok(7));
        for bad in ["", "M", "1.5M", "-1", "10X", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "s", "-1", "fast", "inf", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_duration(Duration::from_micros(83)), "83 µs");
        assert_eq!(fmt_duration(Duration::from_micros(1250)), "1.25 ms");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2 s");
        assert_eq!(fmt_duration(Duration::from_millis(300)), "300 ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(fmt_rate(35_200_000.0), "35.2 MB/s");
        assert_eq!(fmt_rate(2_412_000_000.0), "2412 MB/s");
        assert_eq!(fmt_gbits(2_500_000_000.0), "20.00 Gbit/s");
        assert_eq!(fmt_bytes(100_000_000), "100 MB");
        assert_eq!(fmt_bytes(1234), "1234 B");
    }
}
