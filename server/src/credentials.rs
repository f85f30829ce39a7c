//! Channel secrets at rest: a random salt and SHA-256(salt || secret) per
//! channel, compared in constant time. Pure: no I/O, no HTTP.

use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Length of the random salt stored with every channel.
const SALT_LEN: usize = 16;

pub(crate) fn new_salt() -> [u8; SALT_LEN] {
    let mut salt = [0; SALT_LEN];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
}

pub(crate) fn hash_secret(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

/// Whether `secret` hashes, with `salt`, to `expected` (constant time).
pub(crate) fn verify(salt: &[u8], expected: &[u8], secret: &str) -> bool {
    cdx::config::constant_time_eq(&hash_secret(salt, secret), expected)
}
