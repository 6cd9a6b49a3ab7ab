//! Unit tests of the unit grammar and types.

use super::*;

#[test]
fn durations_round_trip_and_refuse_bare_numbers() {
    assert_eq!(parse_duration("50ms").unwrap(), Duration::from_millis(50));
    assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
    assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    assert_eq!(format_duration(Duration::ZERO), "0s");
    for bad in [
        "50", "50 ms", "ms", "-1s", "+1s", "50msec", "5S", "", "1.5", ".5s", "5.s", "1..5s",
        "1h30", "s1",
    ] {
        let e = parse_duration(bad).unwrap_err();
        assert!(e.to_string().contains("e.g. `50ms`"), "{bad}: {e}");
    }
}

#[test]
fn durations_compound_and_decimal() {
    let d = |s: &str| parse_duration(s).unwrap();
    assert_eq!(d("1m30s"), Duration::from_secs(90));
    assert_eq!(d("1h30m"), Duration::from_secs(5400));
    assert_eq!(d("1.5s"), Duration::from_millis(1500));
    assert_eq!(d("0.5ms"), Duration::from_micros(500));
    assert_eq!(d("2d"), Duration::from_secs(2 * 86_400));
    assert_eq!(d("1h0m5.25s"), Duration::from_millis(3_605_250));
    assert_eq!(d("1.000000001s"), Duration::from_nanos(1_000_000_001));
    // Units from the largest down, each once; nothing finer than a nanosecond.
    for bad in ["1s1m", "1m1m", "30s1h", "1.5ns", "0.0000000001s"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    // Beyond what a Duration of nanoseconds in u64 holds (about 584 years).
    assert!(parse_duration("1000000d").is_err());
}

#[test]
fn mistakes_get_the_spelling_they_meant() {
    let hint = |s: &str| parse_duration(s).unwrap_err().suggestion;
    assert_eq!(hint("5 sec").as_deref(), Some("5s"));
    assert_eq!(hint("50msec").as_deref(), Some("50ms"));
    assert_eq!(hint("2 hours").as_deref(), Some("2h"));
    assert_eq!(hint("1min30sec").as_deref(), Some("1m30s"));
    assert_eq!(hint("5S").as_deref(), Some("5s"));
    assert_eq!(hint("50"), None, "a bare number has no one meaning");
    assert_eq!(hint("1s1m"), None);
    let e = "100Mi/s".parse::<ByteRate>().unwrap_err();
    assert_eq!(e.suggestion.as_deref(), Some("100MiB/s"));
    assert!(e.to_string().ends_with("; did you mean `100MiB/s`?"), "{e}");
    let rate = |s: &str| s.parse::<ByteRate>().unwrap_err().suggestion;
    assert_eq!(rate("100MB/s").as_deref(), Some("100MiB/s"));
    assert_eq!(rate("100MBps").as_deref(), Some("100MiB/s"));
    assert_eq!(rate("64 MiB/sec").as_deref(), Some("64MiB/s"));
    let size = |s: &str| s.parse::<ByteSize>().unwrap_err().suggestion;
    assert_eq!(size("512MB").as_deref(), Some("512MiB"));
    assert_eq!(size("512mib").as_deref(), Some("512MiB"));
    assert_eq!(size("4G").as_deref(), Some("4GiB"));
    assert_eq!(size("512"), None);
    let stall = "20ms".parse::<StallRate>().unwrap_err();
    assert_eq!(stall.suggestion.as_deref(), Some("20ms/s"));
    let pct = "25".parse::<Percent>().unwrap_err();
    assert_eq!(pct.suggestion.as_deref(), Some("25%"));
}

#[test]
fn percentages_are_bounded_and_need_the_sign() {
    assert_eq!("25%".parse::<Percent>().unwrap().fraction(), 0.25);
    assert_eq!("12.5%".parse::<Percent>().unwrap().to_string(), "12.5%");
    assert_eq!("100%".parse::<Percent>().unwrap().value(), 100.0);
    for bad in [
        "25", "101%", "-5%", "%", ".5%", "5.%", "1e2%", "25 %", "nan%",
    ] {
        assert!(bad.parse::<Percent>().is_err(), "{bad}");
    }
}

#[test]
fn sizes_and_rates_use_binary_units() {
    assert_eq!("512MiB".parse::<ByteSize>().unwrap().bytes(), 512 << 20);
    assert_eq!(ByteSize(3 << 30).to_string(), "3GiB");
    assert_eq!(ByteSize(1000).to_string(), "1000B");
    assert_eq!(
        "64MiB/s".parse::<ByteRate>().unwrap().bytes_per_sec(),
        64 << 20
    );
    assert_eq!(ByteRate::mib_per_sec(8).to_string(), "8MiB/s");
    assert_eq!("1.5GiB".parse::<ByteSize>().unwrap().bytes(), 3 << 29);
    assert_eq!("1.5KiB".parse::<ByteSize>().unwrap().bytes(), 1536);
    assert_eq!(
        "2.5MiB/s".parse::<ByteRate>().unwrap().bytes_per_sec(),
        5 << 19
    );
    for bad in [
        "512",
        "512MB",
        "512mib",
        "0.5B",
        "64MiB/sec",
        "1GiB512MiB",
        "-1GiB",
    ] {
        assert!(
            bad.parse::<ByteSize>().is_err() && bad.parse::<ByteRate>().is_err(),
            "{bad}"
        );
    }
}

#[test]
fn stall_rates_are_time_per_second() {
    assert_eq!("20ms/s".parse::<StallRate>().unwrap().fraction(), 0.02);
    assert_eq!(
        "500us/s".parse::<StallRate>().unwrap().nanos_per_sec(),
        500_000
    );
    assert_eq!("2s/s".parse::<StallRate>().unwrap().fraction(), 2.0);
    assert_eq!(StallRate::from_millis_per_sec(20).to_string(), "20ms/s");
    assert_eq!(
        "1.5ms/s".parse::<StallRate>().unwrap().nanos_per_sec(),
        1_500_000
    );
    assert_eq!("0.5s/s".parse::<StallRate>().unwrap().fraction(), 0.5);
    for bad in ["20ms", "20", "2%", "20m/s", "1h/s", "20 ms/s", "1s500ms/s"] {
        assert!(bad.parse::<StallRate>().is_err(), "{bad}");
    }
}

#[test]
fn cores_accept_numbers_and_millicores() {
    assert_eq!("0.5".parse::<Cores>().unwrap().get(), 0.5);
    assert_eq!("500m".parse::<Cores>().unwrap().get(), 0.5);
    for bad in ["-1", "inf", "NaN", "2cores", "0.5m"] {
        assert!(bad.parse::<Cores>().is_err(), "{bad}");
    }
}
