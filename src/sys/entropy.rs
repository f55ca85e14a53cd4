//! Random bits for ids and jitter seeds, straight from the kernel (getrandom(2)). Only this:
//! no policy, no formatting. The `getrandom` crate cannot find glibc's wrapper in a static
//! binary and falls back to opening /dev/random (and polling it) and /dev/urandom on every run;
//! one system call does the same job.

/// 16 random bytes. Blocks only until the kernel's pool is first initialised (early boot).
pub fn random_bytes() -> [u8; 16] {
    let mut buf = [0u8; 16];
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe `rest`, a live, writable slice.
        let n = unsafe { nix::libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
            continue;
        }
        if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        // A kernel without getrandom(2) (before 3.17): the device it replaced.
        return from_urandom().unwrap_or_else(fallback_bytes);
    }
    buf
}

fn from_urandom() -> Option<[u8; 16]> {
    use std::io::Read;
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .ok()?;
    Some(buf)
}

/// Last resort when the kernel gives nothing: std's per-process random hash keys (themselves
/// seeded from the OS when it could) mixed with the time and pid. Unique, not secret, which is
/// all ids and jitter seeds need.
fn fallback_bytes() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, half) in out.chunks_mut(8).enumerate() {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// A random version-4 UUID.
pub fn uuid_v4() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(random_bytes()).into_uuid()
}

/// 64 random bits.
pub fn random_u64() -> u64 {
    let b = random_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4_and_distinct() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| uuid_v4()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|u| u.get_version_num() == 4));
        assert_ne!(random_u64(), random_u64());
        assert_ne!(fallback_bytes(), fallback_bytes());
        assert_ne!(from_urandom(), from_urandom());
    }
}
