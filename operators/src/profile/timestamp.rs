//! Recognises RFC 3339 timestamps in string values, fast enough to try on every string.

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp
/// (`2024-01-01T10:00:00Z`, `2024-01-01 10:00:00.123+02:00`), or `None` when `text` is
/// not one. Fractions beyond milliseconds are truncated.
///
/// # Examples
/// ```
/// use tidewatch_operators::profile::parse_rfc3339_ms;
/// assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1_500));
/// assert_eq!(parse_rfc3339_ms("1970-01-01T02:00:00+02:00"), Some(0));
/// assert_eq!(parse_rfc3339_ms("yesterday"), None);
/// ```
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    // Shortest form: YYYY-MM-DDTHH:MM:SSZ (20 bytes).
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((&b'.', fraction)) = rest.split_first() {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, c) in fraction[..n].iter().enumerate().take(3) {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut n = 0i64;
    for c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Some(n)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats ms since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub(crate) fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_ms;

    #[test]
    fn agrees_with_chrono() {
        for text in [
            "2024-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999Z",
            "1999-12-31T23:59:59.123456+05:30",
            "2031-07-04 12:00:00-08:00",
            "1969-12-31T23:59:59Z",
            "2100-03-01T00:00:00.1Z",
        ] {
            let expected = chrono::DateTime::parse_from_rfc3339(&text.replace(' ', "T")).expect(text).timestamp_millis();
            assert_eq!(parse_rfc3339_ms(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        for text in [
            "",
            "2024-01-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00Zx",
            "abcd-ef-ghT00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(text), None, "{text}");
        }
    }
}
