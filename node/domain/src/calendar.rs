//! Dates of Unix times, without a time-zone database: UTC for protocols, JST (UTC+9, no summer
//! time) for what Japanese users read.

/// (year, month, day, seconds of the day) of Unix seconds (Howard Hinnant's `civil_from_days`).
fn civil(unix_s: u64) -> (i64, i64, i64, u64) {
    let days = (unix_s / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day, unix_s % 86_400)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds.
pub fn rfc3339(unix_s: u64) -> String {
    let (year, month, day, secs) = civil(unix_s);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `YYYY-MM-DD HH:MM` in Japan of Unix milliseconds.
pub fn jst_minute(unix_ms: u64) -> String {
    let (year, month, day, secs) = civil(unix_ms / 1000 + 9 * 3600);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", secs / 3600, secs / 60 % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_868_800), "2000-03-01T00:00:00Z");
        // 2015-09-10 07:45 JST: the Kinugawa levee at Joso broke a few hours later.
        assert_eq!(jst_minute(1_441_838_700_000), "2015-09-10 07:45");
    }
}
