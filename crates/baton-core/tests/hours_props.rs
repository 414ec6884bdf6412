//! Invariants of business-hours calendars, over random instants across DST changes.

use baton_core::hours::Calendar;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

fn calendars() -> Vec<Calendar> {
    let day: &[&str] = &["08:00-12:00", "13:00-18:00"];
    let none: &[&str] = &[];
    vec![
        Calendar::new(
            "America/New_York",
            [day, day, day, day, day, none, none],
            &["2026-11-26", "2026-12-25"],
        )
        .expect("office"),
        Calendar::new("Europe/Berlin", [&["00:00-24:00"]; 7], &[]).expect("always"),
        Calendar::new("Europe/London", [&["01:30-02:30", "22:00-24:00"]; 7], &[])
            .expect("night, crossing DST hours"),
        Calendar::always_open(),
    ]
}

/// Instants from 2026-01-01 to 2027-12-31, which include four DST changes in each zone.
fn instant() -> impl Strategy<Value = Timestamp> {
    (1_767_225_600i64..1_830_297_600i64).prop_map(|s| Timestamp::from_second(s).expect("in range"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn next_open_is_open_and_not_before(at in instant()) {
        for c in calendars() {
            if let Some(n) = c.next_open(at) {
                prop_assert!(n >= at);
                prop_assert!(c.is_open(n), "next_open({at}) = {n} is not open");
                // Nothing open in between: the second before it is closed, unless it is `at`.
                if n > at {
                    prop_assert!(!c.is_open(n - SignedDuration::from_secs(1)) || n - SignedDuration::from_secs(1) < at);
                }
            }
        }
    }

    #[test]
    fn open_duration_is_additive(a in instant(), b in instant(), c in instant()) {
        let mut v = [a, b, c];
        v.sort();
        for cal in calendars() {
            let whole = cal.open_duration(v[0], v[2]);
            let parts = cal.open_duration(v[0], v[1]) + cal.open_duration(v[1], v[2]);
            prop_assert_eq!(whole, parts);
            prop_assert!(whole <= v[2].duration_since(v[0]));
        }
    }

    #[test]
    fn adding_business_time_inverts_measuring_it(from in instant(), mins in 1i64..20_000) {
        for cal in calendars() {
            let d = SignedDuration::from_mins(mins);
            if let Some(end) = cal.add_open_duration(from, d) {
                prop_assert_eq!(cal.open_duration(from, end), d);
            }
        }
    }
}
