//! The `bpf(2)` system call: maps and program loading. The only unsafe
//! code of the crate, each call with the attribute layout the kernel's
//! `union bpf_attr` gives it (zeroed beyond the fields set).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::asm::Insn;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// A map type weft uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// `BPF_MAP_TYPE_HASH`.
    Hash,
    /// `BPF_MAP_TYPE_LRU_HASH`: the least recently used entry makes room.
    LruHash,
    /// `BPF_MAP_TYPE_LPM_TRIE`: longest-prefix match on {prefixlen, data}.
    LpmTrie,
}

impl MapKind {
    /// The kernel's `enum bpf_map_type` value.
    pub fn code(self) -> u32 {
        match self {
            MapKind::Hash => 1,
            MapKind::LruHash => 9,
            MapKind::LpmTrie => 11,
        }
    }

    /// LPM tries must be created without preallocation.
    fn flags(self) -> u32 {
        match self {
            MapKind::LpmTrie => 1, // BPF_F_NO_PREALLOC
            _ => 0,
        }
    }
}

/// A BPF map, closed on drop (programs using it keep it alive).
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    pad: [u32; 27],
}

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    pad0: u32,
    key: u64,
    value_or_next: u64,
    flags: u64,
    pad: [u64; 12],
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    pad: [u64; 12],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    #[allow(unsafe_code)]
    // SAFETY: `attr` is a live, exclusively borrowed `repr(C)` value laid out
    // as the kernel's `union bpf_attr` for `cmd`; the kernel reads (and for
    // some commands writes) at most `size_of::<T>()` bytes of it, and every
    // pointer stored inside points to memory that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    #[allow(unsafe_code)]
    // SAFETY: the kernel just returned this descriptor to us; nothing else
    // owns it.
    unsafe {
        OwnedFd::from_raw_fd(fd as RawFd)
    }
}

#[repr(C)]
#[derive(Default)]
struct GetByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
    pad: [u32; 13],
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
    pad: [u64; 6],
}

/// `struct bpf_prog_info`, up to the fields read here.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// `struct bpf_map_info`, up to the fields read here.
#[repr(C)]
#[derive(Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

fn info<T>(fd: &OwnedFd, info: &mut T) -> io::Result<()> {
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<T>() as u32,
        info: info as *mut T as u64,
        ..Default::default()
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// The maps a loaded program uses, by the program's ID (as tc reports it
/// for an attached filter): each map's descriptor, kind code, key and
/// value sizes. How a restarted agent takes over the maps its predecessor's
/// programs still run with.
pub fn program_maps(prog_id: u32) -> io::Result<Vec<(Map, u32)>> {
    let mut attr = GetByIdAttr {
        id: prog_id,
        ..Default::default()
    };
    let prog = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?);
    let mut pi = ProgInfo::default();
    info(&prog, &mut pi)?;
    let mut ids = vec![0u32; pi.nr_map_ids as usize];
    let mut pi = ProgInfo {
        nr_map_ids: ids.len() as u32,
        map_ids: ids.as_mut_ptr() as u64,
        ..Default::default()
    };
    info(&prog, &mut pi)?;
    let mut maps = Vec::new();
    for id in ids.into_iter().take(pi.nr_map_ids as usize) {
        let mut attr = GetByIdAttr {
            id,
            ..Default::default()
        };
        let fd = owned(bpf(BPF_MAP_GET_FD_BY_ID, &mut attr)?);
        let mut mi = MapInfo::default();
        info(&fd, &mut mi)?;
        maps.push((
            Map {
                fd,
                key_size: mi.key_size as usize,
                value_size: mi.value_size as usize,
            },
            mi.map_type,
        ));
    }
    Ok(maps)
}

impl Map {
    /// Creates a map of `kind` with fixed key and value sizes.
    pub fn create(
        kind: MapKind,
        key_size: usize,
        value_size: usize,
        max_entries: u32,
    ) -> io::Result<Map> {
        let mut attr = MapCreateAttr {
            map_type: kind.code(),
            key_size: key_size as u32,
            value_size: value_size as u32,
            max_entries,
            map_flags: kind.flags(),
            ..Default::default()
        };
        let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
        Ok(Map {
            fd: owned(fd),
            key_size,
            value_size,
        })
    }

    fn check(&self, key: &[u8], value: Option<&[u8]>) {
        assert_eq!(key.len(), self.key_size, "map key size");
        if let Some(v) = value {
            assert_eq!(v.len(), self.value_size, "map value size");
        }
    }

    fn elem_attr(&self, key: &[u8], value: u64, flags: u64) -> ElemAttr {
        ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value_or_next: value,
            flags,
            ..Default::default()
        }
    }

    /// Sets `key` to `value` (creating or replacing it).
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.check(key, Some(value));
        let mut attr = self.elem_attr(key, value.as_ptr() as u64, 0);
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }

    /// Removes `key`; whether it was there.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        self.check(key, None);
        let mut attr = self.elem_attr(key, 0, 0);
        match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.check(key, None);
        let mut value = vec![0u8; self.value_size];
        let mut attr = self.elem_attr(key, value.as_mut_ptr() as u64, 0);
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(_) => Ok(Some(value)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every key in the map (a snapshot; entries may change meanwhile).
    pub fn keys(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        let mut next = vec![0u8; self.key_size];
        // A null key starts from the first entry.
        let mut attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: 0,
            value_or_next: next.as_mut_ptr() as u64,
            ..Default::default()
        };
        loop {
            match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
                Ok(_) => {
                    keys.push(next.clone());
                    let last = keys.last().expect("just pushed");
                    attr.key = last.as_ptr() as u64;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
                Err(e) => return Err(e),
            }
        }
    }

    /// The map's descriptor, for [`crate::asm::Asm::load_map`].
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Key and value sizes.
    pub fn sizes(&self) -> (usize, usize) {
        (self.key_size, self.value_size)
    }
}

/// A loaded program, unloaded when the last reference (this descriptor or
/// an attachment) goes.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

/// The verifier refused a program; `log` says why.
#[derive(Debug, thiserror::Error)]
#[error("load BPF program {name}: {source}\n{log}")]
pub struct LoadError {
    /// The program's name.
    pub name: String,
    /// The system's error.
    pub source: io::Error,
    /// The verifier's log (empty when it produced none).
    pub log: String,
}

/// `BPF_PROG_TYPE_SCHED_CLS`: a tc classifier.
pub const PROG_SCHED_CLS: u32 = 3;

impl Program {
    /// Loads `insns` as a program of `prog_type` named `name` (at most 15
    /// bytes) under `license`. On refusal, loads it again with the
    /// verifier's log on, to say why.
    pub fn load(
        prog_type: u32,
        name: &str,
        insns: &[Insn],
        license: &str,
    ) -> Result<Program, LoadError> {
        let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
        let license = CString::new(license).expect("license has no NUL");
        let mut prog_name = [0u8; 16];
        let n = name.len().min(15);
        prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let attempt = |log: Option<&mut Vec<u8>>| {
            let (level, size, buf) = match log {
                Some(l) => (1, l.len() as u32, l.as_mut_ptr() as u64),
                None => (0, 0, 0),
            };
            let mut attr = ProgLoadAttr {
                prog_type,
                insn_cnt: insns.len() as u32,
                insns: code.as_ptr() as u64,
                license: license.as_ptr() as u64,
                log_level: level,
                log_size: size,
                log_buf: buf,
                kern_version: 0,
                prog_flags: 0,
                prog_name,
                pad: [0; 12],
            };
            bpf(BPF_PROG_LOAD, &mut attr)
        };
        match attempt(None) {
            Ok(fd) => Ok(Program { fd: owned(fd) }),
            Err(source) => {
                let mut log = vec![0u8; 1 << 20];
                let _ = attempt(Some(&mut log));
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                Err(LoadError {
                    name: name.to_string(),
                    source,
                    log: String::from_utf8_lossy(&log[..end]).into_owned(),
                })
            }
        }
    }

    /// The program's descriptor, for attaching it.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Runs the program once on `packet` in the kernel (`BPF_PROG_TEST_RUN`)
    /// with the tc context's `ingress_ifindex` set, as tests of the datapath
    /// logic do: returns the verdict and the packet as the program left it.
    /// Redirect helpers return their verdict without sending anything.
    pub fn test_run(&self, packet: &[u8], ingress_ifindex: u32) -> io::Result<(u32, Vec<u8>)> {
        // `struct __sk_buff` (192 bytes); only the fields the kernel lets a
        // test set may be non-zero.
        let mut ctx = [0u8; 192];
        ctx[36..40].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        let mut out = vec![0u8; packet.len() + 256];
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: packet.len() as u32,
            data_size_out: out.len() as u32,
            data_in: packet.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ctx_size_in: ctx.len() as u32,
            ctx_in: ctx.as_ptr() as u64,
            ..Default::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        out.truncate(attr.data_size_out as usize);
        Ok((attr.retval, out))
    }
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: [u32; 9],
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
