//! Service promises as arithmetic: when a response is due.

use chrono::{DateTime, Duration, Utc};

/// The moment by which a buyer has been promised a response.
pub fn response_due(received: DateTime<Utc>, response_hours: u32) -> DateTime<Utc> {
    received + Duration::hours(i64::from(response_hours))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn due_is_received_plus_hours() {
        let r = Utc.with_ymd_and_hms(2026, 11, 24, 13, 3, 0).unwrap();
        assert_eq!(
            response_due(r, 48),
            Utc.with_ymd_and_hms(2026, 11, 26, 13, 3, 0).unwrap()
        );
    }
}
