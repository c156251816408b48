//! Master keys: 32 random bytes in base64, in a file outside every data directory (0400, or a
//! systemd credential). Every node of a hub holds the same ones; they wrap the data keys and
//! never enter the log, the state or a backup.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use sha2::{Digest, Sha256};

use super::cipher::{self, SECRET_LEN};

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("master key {path} can be read by other users (mode {mode:o}): chmod 400 it")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("master key {path} is not {SECRET_LEN} bytes in base64")]
    Malformed { path: PathBuf },
    #[error("cannot create the master key {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("no randomness from the operating system")]
    Random,
}

/// One master key and its fingerprint.
pub struct MasterKey {
    fingerprint: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint)
    }
}

impl MasterKey {
    pub fn from_secret(secret: &[u8; SECRET_LEN]) -> Self {
        let digest = Sha256::new().chain_update(b"kizuna master key").chain_update(secret).finalize();
        let fingerprint = kizuna_domain::hex(&digest[..8]);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, secret).expect("32 bytes is an AES-256 key"));
        Self { fingerprint, key }
    }

    /// Reads a master key file, refusing one that other users may read.
    pub fn load(path: &Path) -> Result<Self, MasterKeyError> {
        let read = |source| MasterKeyError::Read { path: path.to_owned(), source };
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(read)?;
        let bytes = STANDARD.decode(text.trim()).map_err(|_| MasterKeyError::Malformed { path: path.to_owned() })?;
        let secret =
            <[u8; SECRET_LEN]>::try_from(bytes).map_err(|_| MasterKeyError::Malformed { path: path.to_owned() })?;
        Ok(Self::from_secret(&secret))
    }

    /// Writes a new random master key to `path` (which must not exist), readable by its owner
    /// only, and returns it.
    pub fn create(path: &Path) -> Result<Self, MasterKeyError> {
        let secret: [u8; SECRET_LEN] = cipher::random().map_err(|_| MasterKeyError::Random)?;
        let create = |source| MasterKeyError::Create { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(create)?;
        }
        let mut file = open_private(path).map_err(create)?;
        writeln!(file, "{}", STANDARD.encode(secret)).map_err(create)?;
        file.sync_all().map_err(create)?;
        Ok(Self::from_secret(&secret))
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub(crate) fn key(&self) -> &LessSafeKey {
        &self.key
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), MasterKeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| MasterKeyError::Read { path: path.to_owned(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(MasterKeyError::Exposed { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), MasterKeyError> {
    Ok(())
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// The master keys a node holds: the current one wraps, every one unwraps what it wrapped.
#[derive(Debug, Default)]
pub struct MasterKeys {
    current: Option<MasterKey>,
    previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// No master key: the node seals nothing (and applies the log up to the version before
    /// sealed state, see `kizuna_domain::keyring`).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { current: Some(current), previous }
    }

    /// The current key and the previous ones (still unwrapping what they wrapped), from files.
    pub fn load(current: &Path, previous: &[PathBuf]) -> Result<Self, MasterKeyError> {
        let previous = previous.iter().map(|p| MasterKey::load(p)).collect::<Result<_, _>>()?;
        Ok(Self::new(MasterKey::load(current)?, previous))
    }

    pub fn current(&self) -> Option<&MasterKey> {
        self.current.as_ref()
    }

    pub fn by_fingerprint(&self, fingerprint: &str) -> Option<&MasterKey> {
        self.current.iter().chain(&self.previous).find(|k| k.fingerprint == fingerprint)
    }

    /// The fingerprints held, for an error that tells which one is missing.
    pub fn fingerprints(&self) -> Vec<&str> {
        self.current.iter().chain(&self.previous).map(MasterKey::fingerprint).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_private_and_loads_back_with_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let created = MasterKey::create(&path).unwrap();
        assert_eq!(MasterKey::load(&path).unwrap().fingerprint(), created.fingerprint());
        assert!(MasterKey::create(&path).is_err(), "never overwrites a key");
        assert_eq!(created.fingerprint().len(), 16);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_may_read_or_of_the_wrong_size_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, STANDARD.encode([1u8; 32])).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(MasterKey::load(&path), Err(MasterKeyError::Exposed { mode: 0o644, .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(MasterKey::load(&path).is_ok());
        std::fs::write(&path, STANDARD.encode([1u8; 16])).unwrap();
        assert!(matches!(MasterKey::load(&path), Err(MasterKeyError::Malformed { .. })));
    }
}
