//! Small helpers: GUIDs, opaque tokens, UTC timestamps and ISO-8601 durations.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngExt;

/// A random GUID in the usual 8-4-4-4-12 lowercase form (object ids, request ids, secrets).
pub(crate) fn guid() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random URL-safe string of `len` characters (access tokens, client secrets).
pub(crate) fn random_string(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01; Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u64, u64, u64) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, mo, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2024-05-01T12:00:00`: the form Graph uses in `innerError.date`
/// (<https://learn.microsoft.com/en-us/graph/errors>).
pub(crate) fn graph_date(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = split_time(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
}

/// `2024-05-01 12:00:00Z`: the form Entra uses in token error `timestamp`
/// (<https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>).
pub(crate) fn aad_timestamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = split_time(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fffffff][Z]` as UTC (statusMessage `expiryDateTime`).
pub(crate) fn parse_utc(s: &str) -> Option<SystemTime> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once('T')?;
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let mo: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    let time = time.split('.').next()?;
    let mut tp = time.split(':');
    let h: u64 = tp.next()?.parse().ok()?;
    let mi: u64 = tp.next()?.parse().ok()?;
    let sec: u64 = tp.next().unwrap_or("0").parse().ok()?;
    let days = days_from_civil(y, mo, d);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// `2024-05-01T12:00:00.1234567Z`: the form Graph uses for `expirationDateTime`
/// (<https://learn.microsoft.com/en-us/graph/api/resources/subscription>).
pub(crate) fn graph_datetime(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = split_time(t);
    let frac = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() / 100)
        .unwrap_or(0);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:07}Z")
}

/// Parses an ISO-8601 date-time with `Z`, an offset (`+02:00`) or none (UTC), and optional
/// fractional seconds: what clients send as `expirationDateTime`.
pub(crate) fn parse_datetime(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let (time, offset_secs): (&str, i64) = if let Some(t) = time.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(pos) = time.rfind(['+', '-']) {
        let (t, off) = time.split_at(pos);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let off = &off[1..];
        let (oh, om) = off
            .split_once(':')
            .unwrap_or((off.get(..2)?, off.get(2..)?));
        let secs = oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60;
        (t, sign * secs)
    } else {
        (time, 0)
    };
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let mo: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut tp = hms.split(':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let sec: i64 = tp.next().unwrap_or("0").parse().ok()?;
    if h > 23 || mi > 59 || sec > 60 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = format!("{:0<9}", frac.get(..frac.len().min(9))?)
        .parse()
        .ok()?;
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Parses an ISO-8601 duration such as `PT5M`, `PT1H30M`, `P1D`, `PT90S` (setPresence
/// `expirationDuration`, <https://learn.microsoft.com/en-us/graph/api/presence-setpresence>).
/// Returns None for anything else, e.g. kiota's `0:10:00`.
pub(crate) fn parse_iso_duration(s: &str) -> Option<Duration> {
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0f64;
    let mut any = false;
    for (part, units) in [
        (date, &[('W', 604_800.0), ('D', 86_400.0)][..]),
        (
            time.unwrap_or(""),
            &[('H', 3600.0), ('M', 60.0), ('S', 1.0)][..],
        ),
    ] {
        let mut num = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let idx = units[next_unit..].iter().position(|(u, _)| *u == c)? + next_unit;
            let v: f64 = num.parse().ok()?;
            total += v * units[idx].1;
            num.clear();
            next_unit = idx + 1;
            any = true;
        }
        if !num.is_empty() {
            return None;
        }
    }
    if !any || time == Some("") {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_iso_duration("PT5M"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_iso_duration("PT1H30M"),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(parse_iso_duration("P1D"), Some(Duration::from_secs(86_400)));
        assert_eq!(
            parse_iso_duration("PT4H"),
            Some(Duration::from_secs(14_400))
        );
        assert_eq!(parse_iso_duration("0:10:00"), None);
        assert_eq!(parse_iso_duration("PT"), None);
        assert_eq!(parse_iso_duration("P"), None);
        assert_eq!(parse_iso_duration("PT5"), None);
        assert_eq!(parse_iso_duration("PTM5"), None);
    }

    #[test]
    fn dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_714_564_800); // 2024-05-01T12:00:00Z
        assert_eq!(graph_date(t), "2024-05-01T12:00:00");
        assert_eq!(aad_timestamp(t), "2024-05-01 12:00:00Z");
        assert_eq!(parse_utc("2024-05-01T12:00:00.0000000"), Some(t));
        assert_eq!(parse_utc("2024-05-01T12:00:00Z"), Some(t));
    }

    #[test]
    fn datetimes() {
        let t = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        assert_eq!(parse_datetime("2024-05-01T12:00:00Z"), Some(t));
        assert_eq!(parse_datetime("2024-05-01T14:00:00+02:00"), Some(t));
        assert_eq!(parse_datetime("2024-05-01T12:00:00.000000+00:00"), Some(t));
        assert_eq!(
            parse_datetime("2024-05-01T12:00:00.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(graph_datetime(t), "2024-05-01T12:00:00.0000000Z");
        assert_eq!(parse_datetime(&graph_datetime(t)), Some(t));
        assert_eq!(parse_datetime("yesterday"), None);
        assert_eq!(parse_datetime("2024-05-01T25:00:00Z"), None);
    }

    #[test]
    fn guid_shape() {
        let g = guid();
        assert_eq!(g.len(), 36);
        assert_eq!(g.matches('-').count(), 4);
    }
}
