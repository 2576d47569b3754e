//! Numbers for people: sizes in binary units and durations in the largest sensible units, as
//! reports an auditor reads should show them (raw byte counts stay in the JSON).

/// Bytes in binary units: `512 B`, `1.5 KiB`, `212.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Whole seconds as `1h 2m 3s` (sub-second values as `0.42s`).
pub fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return format!("{s}s");
    }
    if s < 1.0 {
        return format!("{s:.2}s");
    }
    humantime::format_duration(std::time::Duration::from_secs(s.round() as u64)).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(212 << 20), "212.0 MiB");
        assert_eq!(super::seconds(3723.0), "1h 2m 3s");
        assert_eq!(super::seconds(0.42), "0.42s");
        assert_eq!(super::seconds(-1.0), "-1s");
    }
}
