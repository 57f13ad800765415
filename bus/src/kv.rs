//! Key-value buckets of the control plane: opened when they exist, created when they do not,
//! whichever process comes first.

use async_nats::jetstream::{self, kv};

/// Why a key-value bucket could not be opened or created.
#[derive(Debug, thiserror::Error)]
#[error("{action} (bucket {bucket}): {reason}")]
pub struct BucketError {
    /// What was being done.
    pub action: &'static str,
    /// The bucket.
    pub bucket: String,
    /// Why it failed.
    pub reason: String,
}

/// Opens the bucket `config.bucket`, creating it with `config` when it does not exist. An
/// existing bucket is opened as it is.
///
/// # Errors
/// [`BucketError`] when it can be neither opened nor created.
pub async fn open_or_create(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, BucketError> {
    let bucket = config.bucket.clone();
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Two processes starting together both see no bucket and both create it; whoever
        // lost opens the winner's, and fails with its own reason only if there is none.
        Err(create_error) => js.get_key_value(&bucket).await.map_err(|_| BucketError {
            action: "create the bucket",
            bucket: bucket.clone(),
            reason: create_error.to_string(),
        }),
    }
}

/// Opens the bucket `bucket` if it exists: reading must not create what nobody wrote.
///
/// # Errors
/// [`BucketError`] when it exists but cannot be opened.
pub async fn open_existing(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<Option<kv::Store>, BucketError> {
    if js
        .stream_by_subject(format!("$KV.{bucket}.>"))
        .await
        .is_err()
    {
        return Ok(None);
    }
    js.get_key_value(bucket)
        .await
        .map(Some)
        .map_err(|error| BucketError {
            action: "open the bucket",
            bucket: bucket.to_owned(),
            reason: error.to_string(),
        })
}
