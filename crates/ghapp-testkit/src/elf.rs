//! Whether a built binary is statically linked: it names no program interpreter (the dynamic
//! loader) in its ELF program headers. install.sh installs the helper statically linked; its
//! tests and the benchmark rows say which build they ran.

use anyhow::{Context, Result};
use object::read::elf::{ElfFile32, ElfFile64, FileHeader, ProgramHeader};
use object::{FileKind, elf};
use std::fmt;
use std::path::Path;

/// How an executable is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// No program interpreter: the kernel starts it directly (static or static-pie).
    Static,
    /// Started by the dynamic loader its `PT_INTERP` header names.
    Dynamic,
}

impl fmt::Display for Linkage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Linkage::Static => "statically linked",
            Linkage::Dynamic => "dynamically linked",
        })
    }
}

/// The linkage of the ELF executable at `path` (32- or 64-bit, either byte order).
pub fn linkage(path: &Path) -> Result<Linkage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    linkage_of(&bytes).with_context(|| format!("reading {}", path.display()))
}

fn linkage_of(bytes: &[u8]) -> Result<Linkage> {
    let names_interpreter = match FileKind::parse(bytes).context("not an object file")? {
        FileKind::Elf32 => interpreter_header(&ElfFile32::<object::Endianness>::parse(bytes)?),
        FileKind::Elf64 => interpreter_header(&ElfFile64::<object::Endianness>::parse(bytes)?),
        other => anyhow::bail!("not an ELF file ({other:?})"),
    };
    Ok(if names_interpreter {
        Linkage::Dynamic
    } else {
        Linkage::Static
    })
}

fn interpreter_header<Elf: FileHeader<Endian = object::Endianness>>(
    file: &object::read::elf::ElfFile<'_, Elf>,
) -> bool {
    let endian = file.endian();
    file.elf_program_headers()
        .iter()
        .any(|header| header.p_type(endian) == elf::PT_INTERP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_dynamically_linked() {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            eprintln!("SKIPPED this_test_binary_is_dynamically_linked: not glibc Linux");
            return;
        }
        let me = std::env::current_exe().unwrap();
        assert_eq!(linkage(&me).unwrap(), Linkage::Dynamic);
        assert_eq!(Linkage::Dynamic.to_string(), "dynamically linked");
    }

    #[test]
    fn hostile_and_truncated_files_are_errors_not_panics() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for cut in [0, 4, 16, 63, 64, 100, 1000] {
            let _ = linkage_of(&me[..cut.min(me.len())]);
        }
        assert!(linkage_of(b"#!/bin/sh\n").is_err());
        let mut garbage = me[..64.min(me.len())].to_vec();
        garbage.extend(std::iter::repeat_n(0xff, 256));
        let _ = linkage_of(&garbage);
    }
}
