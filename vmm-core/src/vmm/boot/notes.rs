//! ELF notes that decide how a kernel is entered: the PVH entry (`Xen`, type 18) and colo's own
//! `COLO` note of the workload guest.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Type of colo's note ("COLO" in ASCII, little endian).
pub const COLO_NOTE_TYPE: u32 = 0x434f_4c4f;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PT_NOTE: u32 = 4;
const EM_X86_64: u16 = 62;
/// Largest note segment read; real ones are a few hundred bytes.
const MAX_NOTE_SEGMENT: u64 = 64 * 1024;

/// What colo's `COLO` note says about the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColoNote {
    /// Most vCPUs the guest supports.
    pub max_vcpus: u32,
    /// 64-bit entry point, where every vCPU starts.
    pub entry64: u64,
    /// Guest physical address of the guest's own PML4 (loaded into CR3 at entry).
    pub pml4: u64,
    /// Guest physical address of the progress block.
    pub progress: u64,
}

/// The notes found in an x86-64 ELF.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelNotes {
    /// PVH 32-bit entry point.
    pub pvh_entry: Option<u64>,
    /// colo's note.
    pub colo: Option<ColoNote>,
}

/// Why an ELF's headers are not those of an x86-64 kernel.
#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    /// Reading the file failed.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// Not a 64-bit little-endian x86-64 ELF.
    #[error("is an ELF file but not a 64-bit x86-64 one")]
    NotX86_64,
}

/// Reads the PT_NOTE segments of the ELF `file`.
pub fn read_notes(file: &File) -> Result<KernelNotes, NotesError> {
    let mut ehdr = [0u8; 64];
    file.read_exact_at(&mut ehdr, 0)?;
    if ehdr[4] != 2 || ehdr[5] != 1 || u16_at(&ehdr, 18) != EM_X86_64 {
        return Err(NotesError::NotX86_64);
    }
    let phoff = u64_at(&ehdr, 32);
    let phentsize = u64::from(u16_at(&ehdr, 54));
    let phnum = u64::from(u16_at(&ehdr, 56));
    let mut notes = KernelNotes::default();
    if phentsize < 56 {
        return Ok(notes);
    }
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        file.read_exact_at(&mut ph, phoff + i * phentsize)?;
        if u32_at(&ph, 0) != PT_NOTE {
            continue;
        }
        let offset = u64_at(&ph, 8);
        let size = u64_at(&ph, 32).min(MAX_NOTE_SEGMENT);
        let mut seg = vec![0u8; usize::try_from(size).unwrap_or(0)];
        file.read_exact_at(&mut seg, offset)?;
        parse_segment(&seg, &mut notes);
    }
    Ok(notes)
}

/// Walks the notes of one segment (4-byte aligned name and descriptor).
fn parse_segment(seg: &[u8], notes: &mut KernelNotes) {
    let mut at = 0usize;
    while at + 12 <= seg.len() {
        let namesz = u32_at(seg, at) as usize;
        let descsz = u32_at(seg, at + 4) as usize;
        let ntype = u32_at(seg, at + 8);
        let name_at = at + 12;
        let desc_at = name_at + namesz.next_multiple_of(4);
        let next = desc_at + descsz.next_multiple_of(4);
        if next > seg.len() {
            return;
        }
        let name = &seg[name_at..name_at + namesz];
        let desc = &seg[desc_at..desc_at + descsz];
        if name == b"Xen\0" && ntype == XEN_ELFNOTE_PHYS32_ENTRY && desc.len() >= 4 {
            notes.pvh_entry = Some(u64::from(u32_at(desc, 0)));
        }
        if name == b"COLO\0" && ntype == COLO_NOTE_TYPE && desc.len() >= 32 && u32_at(desc, 0) == 1
        {
            notes.colo = Some(ColoNote {
                max_vcpus: u32_at(desc, 4),
                entry64: u64_at(desc, 8),
                pml4: u64_at(desc, 16),
                progress: u64_at(desc, 24),
            });
        }
        at = next;
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_guest_carries_both_notes() {
        let file = File::open(crate::WORKLOAD_GUEST_PATH).unwrap();
        let notes = read_notes(&file).unwrap();
        let colo = notes.colo.expect("COLO note");
        assert!(notes.pvh_entry.is_some());
        assert!(colo.max_vcpus >= 1);
        assert!(colo.entry64 >= 0x10_0000);
        assert_eq!(colo.pml4 % 4096, 0);
    }

    #[test]
    fn truncated_notes_are_ignored() {
        let mut notes = KernelNotes::default();
        parse_segment(&[4, 0, 0, 0, 200, 0, 0, 0, 18, 0, 0, 0, b'X'], &mut notes);
        assert_eq!(notes, KernelNotes::default());
    }
}
