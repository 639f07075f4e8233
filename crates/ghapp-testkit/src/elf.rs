//! Whether a built binary is statically linked: it names no program interpreter (the dynamic
//! loader) in its ELF program headers. install.sh installs the helper statically linked; its
//! test and the benchmark rows say which build they ran.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// `PT_INTERP`: the program header naming the dynamic loader.
const PT_INTERP: u64 = 3;

/// "statically linked" or "dynamically linked", for the 64-bit little-endian ELF file at `path`.
pub fn linkage(path: &Path) -> Result<&'static str> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let dynamic =
        names_interpreter(&bytes).with_context(|| format!("reading {}", path.display()))?;
    Ok(if dynamic {
        "dynamically linked"
    } else {
        "statically linked"
    })
}

/// Whether the ELF image has a `PT_INTERP` program header.
fn names_interpreter(elf: &[u8]) -> Result<bool> {
    let field = |at: u64, len: u64| -> Result<u64> {
        let bytes = at
            .checked_add(len)
            .and_then(|end| Some((usize::try_from(at).ok()?, usize::try_from(end).ok()?)))
            .and_then(|(start, end)| elf.get(start..end))
            .context("a truncated ELF file")?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0, |value, byte| value << 8 | u64::from(*byte)))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let (table, entry_size, entries) = (field(0x20, 8)?, field(0x36, 2)?, field(0x38, 2)?);
    for index in 0..entries {
        let at = index
            .checked_mul(entry_size)
            .and_then(|offset| offset.checked_add(table))
            .context("a program header offset past the end")?;
        if field(at, 4)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_dynamically_linked() {
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let me = std::env::current_exe().unwrap();
            assert_eq!(linkage(&me).unwrap(), "dynamically linked");
        }
    }

    #[test]
    fn headers_without_an_interpreter_and_bad_input() {
        let mut elf = b"\x7fELF\x02\x01".to_vec();
        elf.resize(0x40, 0);
        assert!(!names_interpreter(&elf).unwrap(), "no program headers");
        // One program header of type PT_INTERP at offset 0x40.
        elf[0x20] = 0x40;
        elf[0x36] = 0x38;
        elf[0x38] = 1;
        elf.resize(0x40 + 0x38, 0);
        elf[0x40] = 3;
        assert!(names_interpreter(&elf).unwrap());
        assert!(names_interpreter(&elf[..0x42]).is_err(), "truncated table");
        assert!(names_interpreter(b"#!/bin/sh\n").is_err());
        elf[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(names_interpreter(&elf).is_err(), "offset past the end");
    }
}
