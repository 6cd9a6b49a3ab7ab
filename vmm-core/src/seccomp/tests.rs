use super::*;

use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr};

const KVMIO: u32 = 0xAE;
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
ioctl_io_nr!(KVM_CREATE_VM, KVMIO, 0x01);

#[test]
fn every_thread_kind_has_a_filter_that_compiles() {
    let f = Filters::compile().unwrap();
    for k in ThreadKind::ALL {
        assert!(!f.get(k).is_empty(), "{}", k.name());
    }
}

#[test]
fn the_vcpu_list_names_kvm_run_and_kvm_get_regs_by_their_numbers() {
    let json: serde_json::Value = serde_json::from_str(FILTERS_JSON).unwrap();
    let vals: Vec<u64> = json["vcpu"]["filter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["syscall"] == "ioctl")
        .map(|r| r["args"][0]["val"].as_u64().unwrap())
        .collect();
    let mut want = vec![KVM_RUN(), KVM_GET_REGS()];
    want.sort_unstable();
    let mut vals = vals;
    vals.sort_unstable();
    assert_eq!(vals, want);
}

/// Forks; the child installs `kind`'s filter and runs `then`, exiting 0 if it returns. Returns
/// how the child ended (the raw wait status).
fn in_filtered_child(kind: ThreadKind, then: fn()) -> i32 {
    let filters = Filters::compile().unwrap();
    let filter = filters.get(kind).clone();
    // SAFETY: the child only makes system calls (prctl, seccomp, the one under test, _exit)
    // on memory prepared before the fork; it allocates nothing and takes no lock.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        if install(kind, &filter).is_err() {
            // SAFETY: _exit ends the child at once.
            unsafe { libc::_exit(90) };
        }
        then();
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child, writing its status into `status`.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    status
}

fn killed_by_sigsys(status: i32) -> bool {
    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS
}

#[test]
fn a_call_outside_each_list_ends_the_process_with_sigsys() {
    for kind in ThreadKind::ALL {
        // getppid is in no list.
        let st = in_filtered_child(kind, || {
            // SAFETY: getppid has no arguments or preconditions.
            unsafe { libc::syscall(libc::SYS_getppid) };
        });
        assert!(killed_by_sigsys(st), "{}: status {st:#x}", kind.name());
        // A call on the list passes, and the child ends normally.
        let st = in_filtered_child(kind, || {
            // SAFETY: gettid has no arguments or preconditions.
            unsafe { libc::syscall(libc::SYS_gettid) };
        });
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "{}: status {st:#x}",
            kind.name()
        );
    }
}

#[test]
fn a_vcpu_thread_may_run_its_vcpu_but_not_create_a_vm() {
    let st = in_filtered_child(ThreadKind::Vcpu, || {
        // SAFETY: an ioctl on an invalid descriptor only fails with EBADF.
        unsafe { libc::ioctl(-1, KVM_RUN() as _, 0) };
    });
    assert!(libc::WIFEXITED(st), "KVM_RUN refused: {st:#x}");
    let st = in_filtered_child(ThreadKind::Vcpu, || {
        // SAFETY: as above.
        unsafe { libc::ioctl(-1, KVM_CREATE_VM() as _, 0) };
    });
    assert!(killed_by_sigsys(st), "KVM_CREATE_VM allowed: {st:#x}");
}

#[test]
fn no_thread_may_map_executable_memory() {
    for kind in ThreadKind::ALL {
        let st = in_filtered_child(kind, || {
            // SAFETY: an anonymous mapping we never use; the call is what is tested.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
        });
        assert!(killed_by_sigsys(st), "{}: status {st:#x}", kind.name());
    }
}
