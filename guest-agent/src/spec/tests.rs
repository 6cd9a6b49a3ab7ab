use super::*;

pub(crate) fn sample() -> RunSpec {
    RunSpec {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), "echo hi; exit 7".into()],
        env: vec!["PATH=/bin:/usr/bin".into(), "EMPTY=".into()],
        workdir: "/".into(),
        uid: 1000,
        gid: 100,
        rlimits: vec![
            Rlimit {
                resource: Resource::Nofile,
                soft: 1024,
                hard: 4096,
            },
            Rlimit {
                resource: Resource::Core,
                soft: 0,
                hard: u64::MAX,
            },
        ],
        hostname: "job-1.colo".into(),
        root: Some(RootDisk {
            device: "/dev/vda".into(),
            fstype: "ext4".into(),
            volumes: vec![VolumeDisk {
                device: "/dev/vdb".into(),
                fstype: "ext4".into(),
                target: "/in".into(),
            }],
        }),
    }
}

fn round_trip(spec: &RunSpec) -> Result<RunSpec, SpecError> {
    let mut out = Vec::new();
    spec.encode(&mut out);
    let mut r = Reader::new(&out);
    let back = RunSpec::decode(&mut r)?;
    r.finish()?;
    Ok(back)
}

#[test]
fn a_full_spec_round_trips() {
    let s = sample();
    s.validate().unwrap();
    assert_eq!(round_trip(&s).unwrap(), s);
    let bare = RunSpec {
        args: vec![],
        env: vec![],
        rlimits: vec![],
        root: None,
        ..sample()
    };
    assert_eq!(round_trip(&bare).unwrap(), bare);
}

#[test]
fn every_resource_round_trips_by_its_linux_number() {
    for (i, r) in Resource::ALL.iter().enumerate() {
        assert_eq!(usize::from(r.linux()), i);
        assert_eq!(Resource::from_linux(r.linux()), Some(*r));
    }
    assert_eq!(Resource::from_linux(16), None);
    // The numbers are the C library's.
    let linux = [
        libc::RLIMIT_CPU,
        libc::RLIMIT_FSIZE,
        libc::RLIMIT_DATA,
        libc::RLIMIT_STACK,
        libc::RLIMIT_CORE,
        libc::RLIMIT_RSS,
        libc::RLIMIT_NPROC,
        libc::RLIMIT_NOFILE,
        libc::RLIMIT_MEMLOCK,
        libc::RLIMIT_AS,
        libc::RLIMIT_LOCKS,
        libc::RLIMIT_SIGPENDING,
        libc::RLIMIT_MSGQUEUE,
        libc::RLIMIT_NICE,
        libc::RLIMIT_RTPRIO,
        libc::RLIMIT_RTTIME,
    ];
    for (r, l) in Resource::ALL.iter().zip(linux) {
        assert_eq!(u64::from(r.linux()), l as u64, "{r:?}");
    }
}

#[test]
fn bad_specs_are_refused() {
    let cases: Vec<(RunSpec, &str)> = vec![
        (
            RunSpec {
                path: "bin/sh".into(),
                ..sample()
            },
            "not an absolute path",
        ),
        (
            RunSpec {
                workdir: "tmp".into(),
                ..sample()
            },
            "not an absolute path",
        ),
        (
            RunSpec {
                args: vec!["a\0b".into()],
                ..sample()
            },
            "NUL",
        ),
        (
            RunSpec {
                env: vec!["NOVALUE".into()],
                ..sample()
            },
            "KEY=VALUE",
        ),
        (
            RunSpec {
                env: vec!["=x".into()],
                ..sample()
            },
            "KEY=VALUE",
        ),
        (
            RunSpec {
                args: vec![String::new(); MAX_ARGS + 1],
                ..sample()
            },
            "limit is 1024",
        ),
        (
            RunSpec {
                args: vec!["x".repeat(MAX_STRING + 1)],
                ..sample()
            },
            "limit is 16384",
        ),
        (
            RunSpec {
                hostname: String::new(),
                ..sample()
            },
            "host name",
        ),
        (
            RunSpec {
                hostname: "a_b".into(),
                ..sample()
            },
            "host name",
        ),
        (
            RunSpec {
                hostname: "a".repeat(65),
                ..sample()
            },
            "host name",
        ),
        (
            RunSpec {
                rlimits: vec![Rlimit {
                    resource: Resource::Nofile,
                    soft: 2,
                    hard: 1,
                }],
                ..sample()
            },
            "above the hard limit",
        ),
        (
            RunSpec {
                rlimits: vec![
                    Rlimit {
                        resource: Resource::As,
                        soft: 1,
                        hard: 1
                    };
                    2
                ],
                ..sample()
            },
            "limited twice",
        ),
        (
            RunSpec {
                root: Some(RootDisk {
                    device: "/dev/../etc/x".into(),
                    fstype: "ext4".into(),
                    volumes: vec![],
                }),
                ..sample()
            },
            "under /dev/",
        ),
        (
            RunSpec {
                root: Some(RootDisk {
                    device: "/tmp/disk".into(),
                    fstype: "ext4".into(),
                    volumes: vec![],
                }),
                ..sample()
            },
            "under /dev/",
        ),
        (
            RunSpec {
                root: Some(RootDisk {
                    device: "/dev/vda".into(),
                    fstype: "ext4,ro".into(),
                    volumes: vec![],
                }),
                ..sample()
            },
            "lower-case name",
        ),
        (volumes(&[("/dev/vdb", "/")]), "volume target"),
        (volumes(&[("/dev/vdb", "/a/../etc")]), "volume target"),
        (volumes(&[("/dev/vdb", "in")]), "volume target"),
        (
            volumes(&[("/dev/vdb", "/in"), ("/dev/vdc", "/in")]),
            "volume target",
        ),
        (volumes(&[("/dev/../vdb", "/in")]), "under /dev/"),
        (volumes(&[("/dev/vdb", "/in"); 17]), "volumes"),
    ];
    for (spec, want) in cases {
        let err = spec.validate().expect_err(want).to_string();
        assert!(err.contains(want), "{err:?} should say {want:?}");
        // The guest refuses the same spec when it arrives on the wire.
        let mut out = Vec::new();
        spec.encode(&mut out);
        assert!(
            RunSpec::decode(&mut Reader::new(&out)).is_err(),
            "{want}: decoded"
        );
    }
}

#[test]
fn unknown_resource_and_root_tags_are_refused() {
    let mut s = RunSpec {
        rlimits: vec![],
        root: None,
        ..sample()
    };
    s.rlimits.push(Rlimit {
        resource: Resource::Cpu,
        soft: 1,
        hard: 1,
    });
    let mut out = Vec::new();
    s.encode(&mut out);
    // The resource byte sits 17 bytes before the host name's length and text and the root tag.
    let tag = out.len() - 1;
    out[tag] = 2;
    assert!(matches!(
        RunSpec::decode(&mut Reader::new(&out)),
        Err(SpecError::Wire(WireError::BadValue {
            field: "root",
            value: 2
        }))
    ));
    out[tag] = 0;
    let res = tag - (2 + s.hostname.len()) - 17;
    out[res] = 16;
    assert!(matches!(
        RunSpec::decode(&mut Reader::new(&out)),
        Err(SpecError::Wire(WireError::BadValue {
            field: "resource",
            value: 16
        }))
    ));
}

#[test]
fn every_truncation_of_a_spec_is_an_error() {
    let mut out = Vec::new();
    sample().encode(&mut out);
    for cut in 0..out.len() {
        assert!(
            RunSpec::decode(&mut Reader::new(&out[..cut])).is_err(),
            "cut at {cut}"
        );
    }
}

/// The sample with these volumes (device, target), ext4 each.
fn volumes(v: &[(&str, &str)]) -> RunSpec {
    let mut s = sample();
    if let Some(r) = s.root.as_mut() {
        r.volumes = v
            .iter()
            .map(|(device, target)| VolumeDisk {
                device: (*device).into(),
                fstype: "ext4".into(),
                target: (*target).into(),
            })
            .collect();
    }
    s
}
