use super::*;

/// A profile with one rule per condition kind, shaped like containers-common's.
const PROFILE: &str = r#"{
  "defaultAction": "SCMP_ACT_ERRNO",
  "defaultErrnoRet": 38,
  "archMap": [
    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
  ],
  "syscalls": [
    {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {}},
    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
    {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
    {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "errno": "EPERM",
     "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
    {"names": ["both_caps"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT", "CAP_SYS_ADMIN"]}},
    {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
    {"names": ["modify_ldt"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["x86"]}},
    {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390", "s390x"]}},
    {"names": ["not_on_amd64"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
    {"names": ["new_call"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.8"}},
    {"names": ["old_fallback"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"minKernel": "5.8"}},
    {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
     "args": [{"index": 0, "value": 16, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
              {"index": 2, "value": 9, "valueTwo": 0, "op": "SCMP_CMP_NE"},
              {"index": 1, "value": 15, "valueTwo": 3, "op": "SCMP_CMP_MASKED_EQ"}],
     "excludes": {"caps": ["CAP_AUDIT_WRITE"]}}
  ]
}"#;

fn rules_for<'a>(seccomp: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
    seccomp
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.names().iter().any(|n| n == name))
        .collect()
}

fn convert(caps: &[&str], kernel: (u32, u32)) -> LinuxSeccomp {
    from_containers_profile(PROFILE, caps, kernel).expect("profile converts")
}

#[test]
fn default_action_and_errno_pass_through() {
    let seccomp = convert(&[], (6, 1));
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(seccomp.default_errno_ret(), Some(38));
    let read = rules_for(&seccomp, "read");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].action(), LinuxSeccompAction::ScmpActAllow);
    assert_eq!(read[0].args(), &None);
}

#[test]
#[cfg(target_arch = "x86_64")]
fn architectures_come_from_the_arch_map() {
    let seccomp = convert(&[], (6, 1));
    assert_eq!(
        seccomp.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
    );
}

#[test]
fn includes_caps_need_every_listed_cap() {
    let without = convert(&["CAP_KILL"], (6, 1));
    let chroot = rules_for(&without, "chroot");
    assert_eq!(
        chroot.len(),
        1,
        "only the errno rule without CAP_SYS_CHROOT"
    );
    assert_eq!(chroot[0].action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(chroot[0].errno_ret(), Some(1));

    let with = convert(&["CAP_SYS_CHROOT"], (6, 1));
    let chroot = rules_for(&with, "chroot");
    assert_eq!(chroot.len(), 1, "only the allow rule with CAP_SYS_CHROOT");
    assert_eq!(chroot[0].action(), LinuxSeccompAction::ScmpActAllow);
    assert!(
        rules_for(&with, "both_caps").is_empty(),
        "CAP_SYS_ADMIN missing"
    );

    let both = convert(&["CAP_SYS_CHROOT", "CAP_SYS_ADMIN"], (6, 1));
    assert_eq!(rules_for(&both, "both_caps").len(), 1);
}

#[test]
#[cfg(target_arch = "x86_64")]
fn arch_conditions_match_the_native_arch_and_its_sub_arches() {
    let seccomp = convert(&[], (6, 1));
    assert_eq!(rules_for(&seccomp, "arch_prctl").len(), 1, "amd64 listed");
    assert_eq!(
        rules_for(&seccomp, "modify_ldt").len(),
        1,
        "x86 is a sub-arch"
    );
    assert!(rules_for(&seccomp, "s390_only").is_empty());
    assert!(rules_for(&seccomp, "not_on_amd64").is_empty());
}

#[test]
fn min_kernel_compares_major_then_minor() {
    for (kernel, new_kept) in [
        ((5, 7), false),
        ((5, 8), true),
        ((5, 10), true),
        ((4, 19), false),
        ((6, 0), true),
    ] {
        let seccomp = convert(&[], kernel);
        assert_eq!(
            rules_for(&seccomp, "new_call").len() == 1,
            new_kept,
            "{kernel:?}"
        );
        assert_eq!(
            rules_for(&seccomp, "old_fallback").len() == 1,
            !new_kept,
            "{kernel:?}"
        );
    }
}

#[test]
fn args_keep_index_value_and_operator() {
    let seccomp = convert(&[], (6, 1));
    let socket = rules_for(&seccomp, "socket");
    assert_eq!(socket.len(), 1);
    assert_eq!(socket[0].errno_ret(), Some(22));
    let args = socket[0].args().as_ref().expect("args kept");
    assert_eq!(args.len(), 3);
    assert_eq!(
        (args[0].index(), args[0].value(), args[0].op()),
        (0, 16, LinuxSeccompOperator::ScmpCmpEq)
    );
    assert_eq!(
        (args[1].index(), args[1].value(), args[1].op()),
        (2, 9, LinuxSeccompOperator::ScmpCmpNe)
    );
    assert_eq!(args[2].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
    assert_eq!(args[2].value_two(), Some(3));
    let personality = rules_for(&seccomp, "personality");
    assert_eq!(
        personality[0].args().as_ref().map(|a| a[0].value()),
        Some(8)
    );

    let audit = convert(&["CAP_AUDIT_WRITE"], (6, 1));
    assert!(
        rules_for(&audit, "socket").is_empty(),
        "excluded by the granted cap"
    );
}

#[test]
fn the_result_serializes_as_the_runtime_spec_spells_it() {
    let json = serde_json::to_value(convert(&[], (6, 1))).expect("serializes");
    assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(json["defaultErrnoRet"], 38);
    let socket = json["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .find(|s| s["names"][0] == "socket")
        .expect("socket rule");
    assert_eq!(socket["args"][1]["op"], "SCMP_CMP_NE");
    assert_eq!(socket["errnoRet"], 22);
}

#[test]
fn unknown_action_and_operator_are_named() {
    let bad_action = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_MAYBE"}]}"#;
    let err = from_containers_profile(bad_action, &[], (6, 1)).unwrap_err();
    assert!(
        matches!(err, SeccompError::UnknownAction(ref a) if a == "SCMP_ACT_MAYBE"),
        "{err}"
    );
    assert!(err.to_string().contains("SCMP_ACT_MAYBE"));

    let bad_op = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#;
    let err = from_containers_profile(bad_op, &[], (6, 1)).unwrap_err();
    assert!(err.to_string().contains("SCMP_CMP_ABOUT"), "{err}");
}

#[test]
fn bad_json_and_bad_kernel_versions_are_errors() {
    let err = from_containers_profile("{", &[], (6, 1)).unwrap_err();
    assert!(matches!(err, SeccompError::BadJson(_)), "{err}");
    assert!(err.to_string().contains("seccomp_profile"));

    let bad_kernel = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "five"}}]}"#;
    let err = from_containers_profile(bad_kernel, &[], (6, 1)).unwrap_err();
    assert!(matches!(err, SeccompError::BadKernelVersion(_)), "{err}");
}

#[test]
fn an_unreadable_file_names_the_package_and_the_setting() {
    let err = load_containers_profile(
        std::path::Path::new("/nonexistent/seccomp.json"),
        &[],
        (6, 1),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/nonexistent/seccomp.json"), "{text}");
    assert!(
        text.contains("golang-github-containers-common-dev"),
        "{text}"
    );
    assert!(text.contains("offline.container.seccomp_profile"), "{text}");
}

#[test]
fn kernel_versions_parse_with_suffixes() {
    assert_eq!(parse_kernel("6.18.44-fc-v1272").unwrap(), (6, 18));
    assert_eq!(parse_kernel("5.8").unwrap(), (5, 8));
    assert_eq!(parse_kernel("4.19rc1").unwrap(), (4, 19));
    assert!(parse_kernel("6").is_err());
    let (major, _) = running_kernel();
    assert!(major >= 3, "uname gives a real kernel");
}
