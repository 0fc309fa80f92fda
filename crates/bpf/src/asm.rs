//! A small eBPF assembler: the instructions weft's programs use, with named
//! labels for forward and backward jumps. No compiler toolchain is needed
//! to build weft, and what the kernel runs is readable next to the code
//! that writes it.

use std::collections::HashMap;

/// A register. R0 holds return values, R1–R5 helper arguments (clobbered by
/// calls), R6–R9 survive calls, R10 is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u8);

/// R0: helper return value and program result.
pub const R0: Reg = Reg(0);
/// R1: first helper argument; the context on entry.
pub const R1: Reg = Reg(1);
/// R2: second helper argument.
pub const R2: Reg = Reg(2);
/// R3: third helper argument.
pub const R3: Reg = Reg(3);
/// R4: fourth helper argument.
pub const R4: Reg = Reg(4);
/// R5: fifth helper argument.
pub const R5: Reg = Reg(5);
/// R6: callee-saved.
pub const R6: Reg = Reg(6);
/// R7: callee-saved.
pub const R7: Reg = Reg(7);
/// R8: callee-saved.
pub const R8: Reg = Reg(8);
/// R9: callee-saved.
pub const R9: Reg = Reg(9);
/// R10: the frame pointer (read-only); the stack is below it.
pub const FP: Reg = Reg(10);

/// Memory access width.
#[derive(Clone, Copy, Debug)]
pub enum Size {
    /// 1 byte.
    B,
    /// 2 bytes.
    H,
    /// 4 bytes.
    W,
    /// 8 bytes.
    DW,
}

impl Size {
    fn bits(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::DW => 0x18,
        }
    }
}

/// A conditional jump's comparison (unsigned where it matters).
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    /// ==
    Eq,
    /// !=
    Ne,
    /// > (unsigned)
    Gt,
    /// >= (unsigned)
    Ge,
    /// < (unsigned)
    Lt,
    /// <= (unsigned)
    Le,
    /// (a & b) != 0
    Set,
}

impl Cond {
    fn op(self) -> u8 {
        match self {
            Cond::Eq => 0x10,
            Cond::Gt => 0x20,
            Cond::Ge => 0x30,
            Cond::Set => 0x40,
            Cond::Ne => 0x50,
            Cond::Lt => 0xa0,
            Cond::Le => 0xb0,
        }
    }
}

/// 64-bit ALU operations.
#[derive(Clone, Copy, Debug)]
pub enum Alu {
    /// +=
    Add,
    /// -=
    Sub,
    /// &=
    And,
    /// |=
    Or,
    /// <<=
    Lsh,
    /// >>= (logical)
    Rsh,
    /// =
    Mov,
}

impl Alu {
    fn op(self) -> u8 {
        match self {
            Alu::Add => 0x00,
            Alu::Sub => 0x10,
            Alu::Or => 0x40,
            Alu::And => 0x50,
            Alu::Lsh => 0x60,
            Alu::Rsh => 0x70,
            Alu::Mov => 0xb0,
        }
    }
}

const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
const MODE_MEM: u8 = 0x60;
const MODE_IMM: u8 = 0x00;
const SRC_X: u8 = 0x08;
const JMP_JA: u8 = 0x00;
const JMP_CALL: u8 = 0x80;
const JMP_EXIT: u8 = 0x90;
/// `ld_imm64` with this source register loads a map by file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// One encoded instruction (8 bytes, as the kernel reads them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    /// The instruction's 8 bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// Why a program could not be assembled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsmError {
    /// A jump names a label that was never placed.
    #[error("jump to undefined label {0:?}")]
    UndefinedLabel(String),
    /// A label was placed twice.
    #[error("label {0:?} placed twice")]
    DuplicateLabel(String),
    /// A jump is farther than 16 bits of offset reach.
    #[error("jump to {0:?} out of range")]
    OutOfRange(String),
}

/// A program under construction.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: HashMap<String, usize>,
    fixups: Vec<(usize, String)>,
    duplicate: Option<String>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            dst: dst.0,
            src: src.0,
            off,
            imm,
        });
        self
    }

    /// Places `name` at the next instruction.
    pub fn label(&mut self, name: &str) -> &mut Self {
        if self
            .labels
            .insert(name.to_string(), self.insns.len())
            .is_some()
        {
            self.duplicate.get_or_insert_with(|| name.to_string());
        }
        self
    }

    /// `dst op= imm` (64-bit).
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(CLASS_ALU64 | op.op(), dst, R0, 0, imm)
    }

    /// `dst op= src` (64-bit).
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Self {
        self.push(CLASS_ALU64 | op.op() | SRC_X, dst, src, 0, 0)
    }

    /// `dst = imm`.
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu_imm(Alu::Mov, dst, imm)
    }

    /// `dst = src`.
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_reg(Alu::Mov, dst, src)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(CLASS_LDX | MODE_MEM | size.bits(), dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(CLASS_STX | MODE_MEM | size.bits(), dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(CLASS_ST | MODE_MEM | size.bits(), dst, R0, off, imm)
    }

    /// `dst = map` (the map's file descriptor, resolved by the kernel at
    /// load time); two instruction slots.
    pub fn load_map(&mut self, dst: Reg, map_fd: i32) -> &mut Self {
        self.push(
            CLASS_LD | MODE_IMM | Size::DW.bits(),
            dst,
            Reg(PSEUDO_MAP_FD),
            0,
            map_fd,
        );
        self.push(0, R0, R0, 0, 0)
    }

    /// `dst = imm` for a full 64-bit constant; two instruction slots.
    pub fn load_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.push(
            CLASS_LD | MODE_IMM | Size::DW.bits(),
            dst,
            R0,
            0,
            imm as u32 as i32,
        );
        self.push(0, R0, R0, 0, (imm >> 32) as u32 as i32)
    }

    /// `if dst cond imm goto label`.
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, label: &str) -> &mut Self {
        self.fixups.push((self.insns.len(), label.to_string()));
        self.push(CLASS_JMP | cond.op(), dst, R0, 0, imm)
    }

    /// `if dst cond src goto label`.
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, label: &str) -> &mut Self {
        self.fixups.push((self.insns.len(), label.to_string()));
        self.push(CLASS_JMP | cond.op() | SRC_X, dst, src, 0, 0)
    }

    /// `goto label`.
    pub fn goto(&mut self, label: &str) -> &mut Self {
        self.fixups.push((self.insns.len(), label.to_string()));
        self.push(CLASS_JMP | JMP_JA, R0, R0, 0, 0)
    }

    /// Calls helper number `helper` (arguments in R1–R5, result in R0).
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(CLASS_JMP | JMP_CALL, R0, R0, 0, helper)
    }

    /// Returns R0.
    pub fn exit(&mut self) -> &mut Self {
        self.push(CLASS_JMP | JMP_EXIT, R0, R0, 0, 0)
    }

    /// Resolves the labels and returns the program's instructions.
    pub fn finish(&self) -> Result<Vec<Insn>, AsmError> {
        if let Some(name) = &self.duplicate {
            return Err(AsmError::DuplicateLabel(name.clone()));
        }
        let mut insns = self.insns.clone();
        for (at, name) in &self.fixups {
            let target = *self
                .labels
                .get(name)
                .ok_or_else(|| AsmError::UndefinedLabel(name.clone()))?;
            let off = target as i64 - (*at as i64 + 1);
            insns[*at].off = i16::try_from(off).map_err(|_| AsmError::OutOfRange(name.clone()))?;
        }
        Ok(insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_kernel_reads_it() {
        let mut a = Asm::new();
        a.mov(R6, R1)
            .load(Size::W, R2, R6, 76)
            .store_imm(Size::W, FP, -8, 32)
            .mov_imm(R0, 0)
            .exit();
        let bytes: Vec<[u8; 8]> = a
            .finish()
            .unwrap()
            .into_iter()
            .map(Insn::to_bytes)
            .collect();
        assert_eq!(
            bytes,
            [
                [0xbf, 0x16, 0, 0, 0, 0, 0, 0],        // r6 = r1
                [0x61, 0x62, 76, 0, 0, 0, 0, 0],       // r2 = *(u32 *)(r6 + 76)
                [0x62, 0x0a, 0xf8, 0xff, 32, 0, 0, 0], // *(u32 *)(r10 - 8) = 32
                [0xb7, 0x00, 0, 0, 0, 0, 0, 0],        // r0 = 0
                [0x95, 0, 0, 0, 0, 0, 0, 0],           // exit
            ]
        );
    }

    #[test]
    fn jumps_resolve_forward_and_back() {
        let mut a = Asm::new();
        a.label("top")
            .jump_imm(Cond::Eq, R1, 0, "out")
            .goto("top")
            .label("out")
            .exit();
        let insns = a.finish().unwrap();
        assert_eq!(insns[0].off, 1);
        assert_eq!(insns[1].off, -2);
        let mut bad = Asm::new();
        bad.goto("nowhere");
        assert_eq!(
            bad.finish(),
            Err(AsmError::UndefinedLabel("nowhere".into()))
        );
    }

    #[test]
    fn map_loads_take_two_slots() {
        let mut a = Asm::new();
        a.load_map(R1, 7);
        let insns = a.finish().unwrap();
        assert_eq!(insns.len(), 2);
        assert_eq!(insns[0].to_bytes(), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(insns[1].to_bytes(), [0; 8]);
    }
}
