//! bincode encoding of Raft log entries, metadata and peer messages.
//!
//! One configuration for everything so bytes written by one version are read by the next.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Result, StoreError};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| StoreError::Raft(format!("encoding: {e}")))
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config()).map_err(|e| StoreError::corrupt(what, e))?;
    if read != bytes.len() {
        return Err(StoreError::corrupt(what, format!("{} trailing bytes", bytes.len() - read)));
    }
    Ok(value)
}

/// Prefixes `payload` with its CRC32 so a flipped bit on disk is detected on read.
pub fn with_checksum(payload: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Verifies and strips the checksum added by [`with_checksum`].
pub fn checked<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a [u8]> {
    if bytes.len() < 4 {
        return Err(StoreError::corrupt(what, "record shorter than its checksum"));
    }
    let (sum, payload) = bytes.split_at(4);
    let expected = u32::from_be_bytes(sum.try_into().expect("4 bytes"));
    let actual = crc32fast::hash(payload);
    if expected != actual {
        return Err(StoreError::corrupt(
            what,
            format!("checksum mismatch (stored {expected:08x}, computed {actual:08x})"),
        ));
    }
    Ok(payload)
}
