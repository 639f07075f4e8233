//! The caller's ID token, sent as `Authorization: Bearer …` so the daemon can tell apart
//! callers that share a uid (pods on one node sharing its socket, each with its own projected
//! service-account token). The file named by `$GHAPP_ID_TOKEN_FILE` is read on **every** call:
//! projected tokens are rotated in place by the kubelet, and a token read once would expire.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The environment variable naming the ID token file.
pub const ENV: &str = "GHAPP_ID_TOKEN_FILE";

/// The largest token read (the daemon refuses longer credentials anyway).
pub const MAX_BYTES: usize = 16 * 1024;

/// The file `$GHAPP_ID_TOKEN_FILE` names, when it is set and not empty.
pub fn file_from_env() -> Option<PathBuf> {
    std::env::var_os(ENV)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// Reads the token: surrounding whitespace trimmed; empty, oversized or non-printable content is
/// an error naming the file (never the content).
pub fn read(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_BYTES {
        return Err(format!("it holds more than {MAX_BYTES} bytes"));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| "it is not text".to_string())?
        .trim();
    if text.is_empty() {
        return Err("it is empty".to_string());
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("it holds more than one token (spaces or control characters)".to_string());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "eyJ.a.b\n").unwrap();
        assert_eq!(read(&path).unwrap(), "eyJ.a.b");
        std::fs::write(&path, "  \n").unwrap();
        assert!(read(&path).unwrap_err().contains("empty"));
        std::fs::write(&path, "a b").unwrap();
        assert!(read(&path).is_err());
        std::fs::write(&path, "x".repeat(MAX_BYTES + 1)).unwrap();
        assert!(read(&path).unwrap_err().contains("more than"));
        assert!(read(&dir.path().join("missing")).is_err());
    }
}
