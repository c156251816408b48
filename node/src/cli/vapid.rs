//! `kizuna admin vapid-key --out FILE`: a new VAPID key for Web Push notices.
//!
//! Writes the private key (the raw P-256 scalar, base64url, owner-readable only) for
//! `[notifications] vapid_private_key_file`, and prints the public key browsers subscribe with
//! (the hub also tells them: `GetNotificationSettings.push_public_key`). Keep the file: a new
//! key makes every browser's subscription useless (push services refuse pushes signed with
//! another key), so members would have to turn push on again.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// Writes a new key to `out`, refusing to replace an existing file.
pub fn run(out: &Path) -> anyhow::Result<()> {
    let (private, public) = kizuna_server::push::generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file =
        options.open(out).with_context(|| format!("creating {} (an existing key is kept)", out.display()))?;
    writeln!(file, "{private}").with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    println!("public key (applicationServerKey): {public}");
    Ok(())
}
