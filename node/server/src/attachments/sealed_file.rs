//! An upload's bytes while this node stages them, encrypted under a key that exists only in
//! this process's memory: a random AES-256 key and counter start per upload, never written
//! anywhere. A staged file is unreadable to anyone once its upload ends or the process does
//! (the files are removed then too), like everything else in the data directory.
//!
//! Counter mode, because the file is read and written at any offset: chunks are proposed one
//! by one, and a video's recording location is blanked in place. No tag: the bytes are checked
//! against the uploader's SHA-256 as they arrive, and the file never leaves this process's
//! hands.

use std::io::{Read, Seek, SeekFrom, Write};

use aes::Aes256;
use ctr::Ctr128BE;
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

/// One staged upload's key and counter start.
pub struct StagingKey {
    key: [u8; 32],
    iv: [u8; 16],
}

impl StagingKey {
    pub fn generate() -> std::io::Result<Self> {
        let mut bytes = [0u8; 48];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
        let (mut key, mut iv) = ([0u8; 32], [0u8; 16]);
        key.copy_from_slice(&bytes[..32]);
        iv.copy_from_slice(&bytes[32..]);
        Ok(Self { key, iv })
    }

    /// The same key, for a blocking task that reads the file.
    pub fn clone_of(key: &StagingKey) -> StagingKey {
        StagingKey { key: key.key, iv: key.iv }
    }

    /// Encrypts or decrypts (the same in counter mode) `data`, found at `offset` in the file.
    pub fn apply(&self, offset: u64, data: &mut [u8]) {
        let mut cipher = Ctr128BE::<Aes256>::new(&self.key.into(), &self.iv.into());
        cipher.seek(offset);
        cipher.apply_keystream(data);
    }
}

/// A staged file opened for reading and writing its plain bytes at any offset.
pub struct SealedFile<'k> {
    file: std::fs::File,
    key: &'k StagingKey,
    at: u64,
}

impl<'k> SealedFile<'k> {
    pub fn open(path: &std::path::Path, key: &'k StagingKey) -> std::io::Result<Self> {
        Ok(Self { file: std::fs::File::options().read(true).write(true).open(path)?, key, at: 0 })
    }
}

impl Read for SealedFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.key.apply(self.at, &mut buf[..n]);
        self.at += n as u64;
        Ok(n)
    }
}

impl Write for SealedFile<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut sealed = buf.to_vec();
        self.key.apply(self.at, &mut sealed);
        let n = self.file.write(&sealed)?;
        self.at += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for SealedFile<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.at = self.file.seek(to)?;
        Ok(self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_back_at_any_offset_and_are_not_on_disk_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged");
        std::fs::write(&path, b"").unwrap();
        let key = StagingKey::generate().unwrap();
        let plain = "訪問看護記録: 褥瘡の処置".repeat(100).into_bytes();
        let mut file = SealedFile::open(&path, &key).unwrap();
        file.write_all(&plain).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), plain.len());
        assert!(!on_disk.windows(6).any(|w| w == "褥瘡".as_bytes()), "no plain bytes on disk");
        let mut middle = vec![0; 100];
        file.seek(SeekFrom::Start(1000)).unwrap();
        file.read_exact(&mut middle).unwrap();
        assert_eq!(middle, plain[1000..1100]);
        file.seek(SeekFrom::Start(7)).unwrap();
        file.write_all(b"XYZ").unwrap();
        let mut all = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut all).unwrap();
        assert_eq!(&all[7..10], b"XYZ");
        assert_eq!(all[10..], plain[10..]);
        let other = StagingKey::generate().unwrap();
        let mut wrong = std::fs::read(&path).unwrap();
        other.apply(0, &mut wrong);
        assert_ne!(wrong, all, "another key reads nothing");
    }
}
