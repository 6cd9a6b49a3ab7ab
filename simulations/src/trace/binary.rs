//! The compact binary trace: what `colo-sim generate` and `colo-sim convert` write and every
//! run can read, one step at a time, in constant memory.
//!
//! Layout (all integers little-endian):
//!
//! | offset | what |
//! |---|---|
//! | 0 | magic `COLOSIM\0` |
//! | 8 | version `u32` (1) |
//! | 12 | seconds per step `u32` |
//! | 16 | steps `u32` |
//! | 20 | nodes `u32` |
//! | 24 | VMs `u64` |
//! | 32 | description length `u32`, then that many bytes of UTF-8 |
//! | … | nodes × 24 bytes: CPU millicores `u32`, flags `u32` (bit 0: batch pool), memory bytes `u64`, disk bytes/s `u64` |
//! | … | steps × nodes × 4 bytes of online demand, step-major: CPU `u16` (1/10,000 of the node), memory `u8` (1/250), IO `u8` (1/250) |
//! | … | VMs × 40 bytes, by arrival: arrival s `u32`, job `u32`, request millicores `u32`, request MiB `u32`, vCPUs `u16`, flags `u8` (bit 0: fails), membw `u8`, CPU millicores `u32`, memory MiB `u32`, IO KiB/s `u32`, work s `u32`, reserved `u32` |
//!
//! 4,000 nodes × 8 days at 10 s steps is 1.1 GB of online rows; a run holds one row in memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{NodeSpec, OnlineSample, TraceError, TraceInfo, TraceSource, VmSpec};

const MAGIC: &[u8; 8] = b"COLOSIM\0";
const VERSION: u32 = 1;
const NODE_BYTES: u64 = 24;
const ROW_BYTES_PER_NODE: u64 = 4;
const VM_BYTES: usize = 40;
const MAX_DESCRIPTION: u32 = 1 << 16;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TraceError + '_ {
    move |source| TraceError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn encode_vm(v: &VmSpec) -> [u8; VM_BYTES] {
    let mut b = [0u8; VM_BYTES];
    b[0..4].copy_from_slice(&v.arrival_s.to_le_bytes());
    b[4..8].copy_from_slice(&v.job.to_le_bytes());
    b[8..12].copy_from_slice(&v.request_millicores.to_le_bytes());
    b[12..16].copy_from_slice(&v.request_mib.to_le_bytes());
    b[16..18].copy_from_slice(&v.vcpus.to_le_bytes());
    b[18] = u8::from(v.fails);
    b[19] = v.membw;
    b[20..24].copy_from_slice(&v.cpu_millicores.to_le_bytes());
    b[24..28].copy_from_slice(&v.memory_mib.to_le_bytes());
    b[28..32].copy_from_slice(&v.io_kib_per_sec.to_le_bytes());
    b[32..36].copy_from_slice(&v.work_s.to_le_bytes());
    b
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn decode_vm(b: &[u8; VM_BYTES]) -> VmSpec {
    VmSpec {
        arrival_s: u32_at(b, 0),
        job: u32_at(b, 4),
        request_millicores: u32_at(b, 8),
        request_mib: u32_at(b, 12),
        vcpus: u16::from_le_bytes([b[16], b[17]]),
        fails: b[18] & 1 == 1,
        membw: b[19],
        cpu_millicores: u32_at(b, 20),
        memory_mib: u32_at(b, 24),
        io_kib_per_sec: u32_at(b, 28),
        work_s: u32_at(b, 32),
    }
}

/// Writes a binary trace: `info`, then `row(step, buffer)` for every step (it fills one entry
/// per node), then `vms` (sorted here by arrival, stably).
///
/// # Errors
/// [`TraceError`] when the file cannot be written or `row` fails.
pub fn write<F>(
    path: &Path,
    info: &TraceInfo,
    mut row: F,
    vms: &mut [VmSpec],
) -> Result<(), TraceError>
where
    F: FnMut(u32, &mut [OnlineSample]) -> Result<(), TraceError>,
{
    let e = io_err(path);
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).map_err(&e)?);
    let nodes = u32::try_from(info.nodes.len()).map_err(|_| TraceError::Format {
        path: path.display().to_string(),
        reason: "more than 2^32 nodes".to_owned(),
    })?;
    let desc = info.description.as_bytes();
    let desc = &desc[..desc.len().min(MAX_DESCRIPTION as usize)];
    w.write_all(MAGIC).map_err(&e)?;
    for x in [VERSION, info.step_secs, info.steps, nodes] {
        w.write_all(&x.to_le_bytes()).map_err(&e)?;
    }
    w.write_all(&(vms.len() as u64).to_le_bytes()).map_err(&e)?;
    #[allow(clippy::cast_possible_truncation)]
    w.write_all(&(desc.len() as u32).to_le_bytes())
        .map_err(&e)?;
    w.write_all(desc).map_err(&e)?;
    for n in &info.nodes {
        w.write_all(&n.cpu_millicores.to_le_bytes()).map_err(&e)?;
        w.write_all(&u32::from(n.batch_pool).to_le_bytes())
            .map_err(&e)?;
        w.write_all(&n.memory_bytes.to_le_bytes()).map_err(&e)?;
        w.write_all(&n.disk_bytes_per_sec.to_le_bytes())
            .map_err(&e)?;
    }
    let mut buf = vec![OnlineSample::default(); info.nodes.len()];
    let mut bytes = Vec::with_capacity(info.nodes.len() * 4);
    for step in 0..info.steps {
        row(step, &mut buf)?;
        bytes.clear();
        for s in &buf {
            bytes.extend_from_slice(&s.cpu.to_le_bytes());
            bytes.push(s.memory);
            bytes.push(s.io);
        }
        w.write_all(&bytes).map_err(&e)?;
    }
    vms.sort_by_key(|v| v.arrival_s);
    for v in vms.iter() {
        w.write_all(&encode_vm(v)).map_err(&e)?;
    }
    w.flush().map_err(&e)?;
    Ok(())
}

/// A binary trace read as a stream.
#[derive(Debug)]
pub struct BinaryTrace {
    path: String,
    info: TraceInfo,
    rows: BufReader<File>,
    row_bytes: Vec<u8>,
    next_row: u32,
    vms: BufReader<File>,
    vms_left: u64,
    lookahead: Option<VmSpec>,
}

impl BinaryTrace {
    /// Opens `path` and checks its header and size.
    ///
    /// # Errors
    /// [`TraceError::Format`] when it is not a colo-sim trace or is truncated.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let e = io_err(path);
        let shown = path.display().to_string();
        let bad = |reason: String| TraceError::Format {
            path: shown.clone(),
            reason,
        };
        let mut f = BufReader::new(File::open(path).map_err(&e)?);
        let mut head = [0u8; 36];
        f.read_exact(&mut head)
            .map_err(|_| bad("too short for a header".to_owned()))?;
        if &head[0..8] != MAGIC {
            return Err(bad("not a colo-sim trace (bad magic)".to_owned()));
        }
        let version = u32_at(&head, 8);
        if version != VERSION {
            return Err(bad(format!(
                "format version {version}, this colo-sim reads {VERSION}"
            )));
        }
        let (step_secs, steps, nodes) = (u32_at(&head, 12), u32_at(&head, 16), u32_at(&head, 20));
        let vm_count = u64::from_le_bytes(head[24..32].try_into().unwrap_or([0; 8]));
        let desc_len = u32_at(&head, 32);
        if step_secs == 0 || desc_len > MAX_DESCRIPTION {
            return Err(bad("corrupt header".to_owned()));
        }
        let mut desc = vec![0u8; desc_len as usize];
        f.read_exact(&mut desc)
            .map_err(|_| bad("truncated description".to_owned()))?;
        let description = String::from_utf8_lossy(&desc).into_owned();
        let nodes_offset = 36 + u64::from(desc_len);
        let rows_offset = nodes_offset + u64::from(nodes) * NODE_BYTES;
        let vms_offset = rows_offset + u64::from(steps) * u64::from(nodes) * ROW_BYTES_PER_NODE;
        let expected = vms_offset + vm_count * VM_BYTES as u64;
        let actual = f.get_ref().metadata().map_err(&e)?.len();
        if actual != expected {
            return Err(bad(format!(
                "{actual} bytes, the header promises {expected} (truncated or damaged)"
            )));
        }
        let mut specs = Vec::with_capacity(nodes as usize);
        let mut nb = [0u8; NODE_BYTES as usize];
        for _ in 0..nodes {
            f.read_exact(&mut nb).map_err(&e)?;
            specs.push(NodeSpec {
                cpu_millicores: u32_at(&nb, 0),
                batch_pool: u32_at(&nb, 4) & 1 == 1,
                memory_bytes: u64::from_le_bytes(nb[8..16].try_into().unwrap_or([0; 8])),
                disk_bytes_per_sec: u64::from_le_bytes(nb[16..24].try_into().unwrap_or([0; 8])),
            });
        }
        let mut vms = BufReader::with_capacity(1 << 16, File::open(path).map_err(&e)?);
        vms.seek(SeekFrom::Start(vms_offset)).map_err(&e)?;
        Ok(Self {
            path: shown,
            info: TraceInfo {
                step_secs,
                steps,
                nodes: specs,
                description,
            },
            rows: BufReader::with_capacity(1 << 18, f.into_inner()),
            row_bytes: vec![0; nodes as usize * ROW_BYTES_PER_NODE as usize],
            next_row: 0,
            vms,
            vms_left: vm_count,
            lookahead: None,
        })
        .and_then(|mut t| {
            t.rows
                .seek(SeekFrom::Start(rows_offset))
                .map_err(io_err(path))?;
            Ok(t)
        })
    }

    fn next_vm(&mut self) -> Result<Option<VmSpec>, TraceError> {
        if let Some(v) = self.lookahead.take() {
            return Ok(Some(v));
        }
        if self.vms_left == 0 {
            return Ok(None);
        }
        let mut b = [0u8; VM_BYTES];
        self.vms
            .read_exact(&mut b)
            .map_err(|source| TraceError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.vms_left -= 1;
        Ok(Some(decode_vm(&b)))
    }
}

impl TraceSource for BinaryTrace {
    fn info(&self) -> &TraceInfo {
        &self.info
    }

    fn online_is_generated(&self) -> bool {
        false
    }

    fn synthetic(&self) -> Option<&super::synthetic::OnlineModel> {
        None
    }

    fn online_row(&mut self, step: u32, row: &mut [OnlineSample]) -> Result<(), TraceError> {
        if step != self.next_row || row.len() != self.info.nodes.len() {
            return Err(TraceError::Format {
                path: self.path.clone(),
                reason: format!(
                    "row {step} asked for out of order (next is {})",
                    self.next_row
                ),
            });
        }
        self.rows
            .read_exact(&mut self.row_bytes)
            .map_err(|source| TraceError::Io {
                path: self.path.clone(),
                source,
            })?;
        for (s, b) in row.iter_mut().zip(self.row_bytes.chunks_exact(4)) {
            *s = OnlineSample {
                cpu: u16::from_le_bytes([b[0], b[1]]),
                memory: b[2],
                io: b[3],
            };
        }
        self.next_row += 1;
        Ok(())
    }

    fn arrivals(&mut self, step: u32, out: &mut Vec<VmSpec>) -> Result<(), TraceError> {
        let end = u64::from(step + 1) * u64::from(self.info.step_secs);
        while let Some(v) = self.next_vm()? {
            if u64::from(v.arrival_s) >= end {
                self.lookahead = Some(v);
                break;
            }
            out.push(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TraceInfo {
        TraceInfo {
            step_secs: 10,
            steps: 3,
            nodes: vec![
                NodeSpec {
                    cpu_millicores: 32_000,
                    memory_bytes: 1 << 37,
                    disk_bytes_per_sec: 1_000_000_000,
                    batch_pool: false,
                },
                NodeSpec {
                    cpu_millicores: 64_000,
                    memory_bytes: 1 << 38,
                    disk_bytes_per_sec: 500_000_000,
                    batch_pool: true,
                },
            ],
            description: "test".to_owned(),
        }
    }

    fn vm(arrival_s: u32, job: u32) -> VmSpec {
        VmSpec {
            arrival_s,
            job,
            request_millicores: 2000,
            request_mib: 4096,
            vcpus: 2,
            cpu_millicores: 1500,
            memory_mib: 3000,
            io_kib_per_sec: 77,
            membw: 200,
            work_s: 600,
            fails: job == 2,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        let mut vms = vec![vm(25, 2), vm(0, 0), vm(9, 1), vm(10, 1)];
        write(
            &path,
            &info(),
            |step, row| {
                for (i, s) in row.iter_mut().enumerate() {
                    *s = OnlineSample {
                        cpu: u16::try_from(step * 100 + i as u32).unwrap(),
                        memory: 7,
                        io: 9,
                    };
                }
                Ok(())
            },
            &mut vms,
        )
        .unwrap();
        let mut t = BinaryTrace::open(&path).unwrap();
        assert_eq!(t.info(), &info());
        let mut row = vec![OnlineSample::default(); 2];
        let mut got = Vec::new();
        for step in 0..3 {
            t.online_row(step, &mut row).unwrap();
            assert_eq!(row[1].cpu, u16::try_from(step * 100 + 1).unwrap());
            let before = got.len();
            t.arrivals(step, &mut got).unwrap();
            assert!(got[before..].iter().all(|v| v.arrival_s / 10 == step));
        }
        assert_eq!(got, vec![vm(0, 0), vm(9, 1), vm(10, 1), vm(25, 2)]);
        assert!(t.online_row(0, &mut row).is_err(), "rows only go forward");
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        write(&path, &info(), |_, _| Ok(()), &mut [vm(0, 0)]).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 1).unwrap();
        let err = BinaryTrace::open(&path).unwrap_err().to_string();
        assert!(err.contains("truncated or damaged"), "{err}");
        std::fs::write(&path, b"hello world, not a trace at all, nope!").unwrap();
        let err = BinaryTrace::open(&path).unwrap_err().to_string();
        assert!(err.contains("bad magic"), "{err}");
    }
}
