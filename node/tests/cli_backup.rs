//! The backup commands of the real binary, as an operator types them: `backup keygen` makes a
//! 32-byte key readable by its owner only and never overwrites one; making a backup without
//! `--dir` or `--key` says what is missing; `backup verify` of something that is not a backup
//! says so. (The whole backup, verify and restore story runs in tests/backup.rs.)

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const KIZUNA: &str = env!("CARGO_BIN_EXE_kizuna");

fn kizuna(args: &[&str]) -> (bool, String) {
    let out = Command::new(KIZUNA).args(args).output().expect("kizuna runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn backup_commands_make_a_key_and_say_what_is_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("backup.key");
    let key_arg = key.to_str().expect("a path");
    let (made, said) = kizuna(&["admin", "backup", "keygen", "--out", key_arg]);
    assert!(made, "{said}");
    assert!(said.contains("wrote backup key"), "{said}");
    let meta = std::fs::metadata(&key).expect("the key file");
    assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (32, 0o400));
    let (again, said) = kizuna(&["admin", "backup", "keygen", "--out", key_arg]);
    assert!(!again && said.contains("creating"), "never over an existing key: {said}");

    let (made, said) = kizuna(&["admin", "backup", "--key", key_arg]);
    assert!(!made && said.contains("--dir"), "{said}");

    let fake = dir.path().join("fake.kbk");
    std::fs::write(&fake, b"not a backup at all").expect("a file");
    let (verified, said) = kizuna(&["admin", "backup", "verify", fake.to_str().unwrap(), "--key", key_arg]);
    assert!(!verified && said.contains("not a Kizuna backup"), "{said}");
}
