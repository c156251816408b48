//! An upload's bytes while this node stages them, encrypted under a key that exists only in
//! this process's memory: a random AES-256 key and counter start per upload, never written
//! anywhere. A staged file is unreadable to anyone once its upload ends or the process does
//! (the files are removed then too), like everything else in the data directory.
//!
//! Counter mode, because the file is read and written at any offset: chunks are proposed one
//! by one, and a video's recording location is blanked in place. A range written again (the
//! blanking) is written under a fresh key of its own, never the same keystream twice: on a
//! copy-on-write file system both versions of the block may survive, and two texts under one
//! keystream would give away the one that was blanked. No tag: the bytes are checked against
//! the uploader's SHA-256 as they arrive, and the file never leaves this process's hands.

use std::io::{Read, Seek, SeekFrom, Write};

use aes::Aes256;
use ctr::Ctr128BE;
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

/// An AES-256 key and counter start.
#[derive(Clone)]
struct Stream {
    key: [u8; 32],
    iv: [u8; 16],
}

impl Stream {
    fn generate() -> std::io::Result<Self> {
        let mut bytes = [0u8; 48];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
        let (mut key, mut iv) = ([0u8; 32], [0u8; 16]);
        key.copy_from_slice(&bytes[..32]);
        iv.copy_from_slice(&bytes[32..]);
        Ok(Self { key, iv })
    }

    /// XORs the keystream at `offset` (of the file) into `data`.
    fn apply(&self, offset: u64, data: &mut [u8]) {
        let mut cipher = Ctr128BE::<Aes256>::new(&self.key.into(), &self.iv.into());
        cipher.seek(offset);
        cipher.apply_keystream(data);
    }
}

/// One staged upload's keys: the one its bytes arrived under, and one per range written again.
#[derive(Clone)]
pub struct StagingKey {
    first: Stream,
    /// `[start, end)` of the file under a later key; the last one covering a byte is its key.
    rewritten: Vec<(u64, u64, Stream)>,
}

impl StagingKey {
    pub fn generate() -> std::io::Result<Self> {
        Ok(Self { first: Stream::generate()?, rewritten: Vec::new() })
    }

    /// Encrypts or decrypts (the same in counter mode) `data`, found at `offset` in the file,
    /// each byte under the key of its range.
    pub fn apply(&self, offset: u64, data: &mut [u8]) {
        let end = offset + data.len() as u64;
        let mut cuts = vec![offset, end];
        for &(start, stop, _) in &self.rewritten {
            cuts.extend([start, stop].into_iter().filter(|c| (offset + 1..end).contains(c)));
        }
        cuts.sort_unstable();
        cuts.dedup();
        for piece in cuts.windows(2) {
            let (from, to) = (piece[0], piece[1]);
            let covering = self.rewritten.iter().rev().find(|(start, stop, _)| *start <= from && to <= *stop);
            let stream = covering.map_or(&self.first, |(_, _, s)| s);
            stream.apply(from, &mut data[(from - offset) as usize..(to - offset) as usize]);
        }
    }

    /// Bytes `[start, end)` are about to be written again: from now on under a fresh key.
    fn rewrite(&mut self, start: u64, end: u64) -> std::io::Result<()> {
        self.rewritten.push((start, end, Stream::generate()?));
        Ok(())
    }
}

/// A staged file opened for reading and writing its plain bytes at any offset.
pub struct SealedFile<'k> {
    file: std::fs::File,
    key: &'k mut StagingKey,
    at: u64,
    /// Bytes before this were written already: writing them again takes a fresh key.
    written: u64,
}

impl<'k> SealedFile<'k> {
    pub fn open(path: &std::path::Path, key: &'k mut StagingKey) -> std::io::Result<Self> {
        let file = std::fs::File::options().read(true).write(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self { file, key, at: 0, written })
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
        let end = self.at + buf.len() as u64;
        if self.at < self.written {
            self.key.rewrite(self.at, end)?;
        }
        let mut sealed = buf.to_vec();
        self.key.apply(self.at, &mut sealed);
        let n = self.file.write(&sealed)?;
        self.at += n as u64;
        self.written = self.written.max(self.at);
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
        let mut key = StagingKey::generate().unwrap();
        let plain = "訪問看護記録: 褥瘡の処置".repeat(100).into_bytes();
        let mut file = SealedFile::open(&path, &mut key).unwrap();
        file.write_all(&plain).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), plain.len());
        assert!(!on_disk.windows(6).any(|w| w == "褥瘡".as_bytes()), "no plain bytes on disk");
        let mut middle = vec![0; 100];
        file.seek(SeekFrom::Start(1000)).unwrap();
        file.read_exact(&mut middle).unwrap();
        assert_eq!(middle, plain[1000..1100]);
        // Rewritten in place: the new bytes are not under the old keystream.
        file.seek(SeekFrom::Start(7)).unwrap();
        file.write_all(b"XYZ").unwrap();
        let mut all = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut all).unwrap();
        assert_eq!(&all[7..10], b"XYZ");
        assert_eq!((&all[..7], &all[10..]), (&plain[..7], &plain[10..]));
        let now_on_disk = std::fs::read(&path).unwrap();
        let mut xor: Vec<u8> = (7..10).map(|i| on_disk[i] ^ now_on_disk[i]).collect();
        let (old_text, new_text) = (&plain[7..10], b"XYZ");
        xor.iter_mut().zip(new_text).for_each(|(x, n)| *x ^= n);
        assert_ne!(xor, old_text, "the two versions of the block do not give the old text away");
        let other = StagingKey::generate().unwrap();
        let mut wrong = now_on_disk;
        other.apply(0, &mut wrong);
        assert_ne!(wrong, all, "another key reads nothing");
        drop(file);
        let mut again = SealedFile::open(&path, &mut key).unwrap();
        let mut reread = Vec::new();
        again.read_to_end(&mut reread).unwrap();
        assert_eq!(reread, all, "the keys of rewritten ranges are kept");
    }
}
