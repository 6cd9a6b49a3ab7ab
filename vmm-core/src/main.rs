//! `colo-vmm`: runs one MicroVM per process.

fn main() {
    eprintln!("colo-vmm: no subcommand implemented yet");
    std::process::exit(colo_vmm::EXIT_VMM_ERROR);
}
