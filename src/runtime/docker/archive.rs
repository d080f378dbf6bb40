//! Files into containers, and TLS material for bollard in a private directory that
//! disappears with the client.

use std::path::PathBuf;

use super::translate::File;

/// A tar stream of `files` with their parent directories, owned by root: group-root
/// readable files are what GoCD's agent user (uid 1000, gid 0) can read. Each of
/// `open_dirs` (existing mount points, so no parent entries that would change the
/// image's directories) becomes world-writable.
pub fn tar(files: &[File], open_dirs: &[String]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in open_dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o777);
        header.set_size(0);
        builder.append_data(&mut header, format!("{}/", dir.trim_matches('/')), std::io::empty())?;
    }
    let mut dirs: Vec<String> = Vec::new();
    for file in files {
        let mut parent = String::new();
        for part in file.path.trim_start_matches('/').split('/').rev().skip(1).collect::<Vec<_>>().into_iter().rev() {
            parent = format!("{parent}{part}/");
            if !dirs.contains(&parent) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, &parent, std::io::empty())?;
                dirs.push(parent.clone());
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_mode(file.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(file.contents.len() as u64);
        builder.append_data(&mut header, file.path.trim_start_matches('/'), file.contents.as_slice())?;
    }
    builder.into_inner()
}

/// A directory only this user can read, removed with everything in it when dropped.
pub struct PrivateDir(PathBuf);

impl PrivateDir {
    pub fn new() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("gocd-dind-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self(path))
    }

    pub fn write(&self, name: &str, contents: &str) -> std::io::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.0.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?
            .write_all(contents.as_bytes())?;
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
