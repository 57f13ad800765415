//! The calls that publish packages and events, provision and inspect the streams, explain an
//! event and read a plugin's logs: each one runs the library code the CLI runs, and answers
//! JSON.

use async_nats::jetstream;
use serde_json::{json, Value};
use switchyard_bus::report::stream_report;
use switchyard_bus::Bus;
use switchyard_control::audit::{Action, Auditor};
use switchyard_control::package::{signer_of, Package, PackageStore, Published};
use switchyard_dispatcher::explain::{explain as explain_event, SearchFrom};
use switchyard_dispatcher::provision::{self, Limits};
use switchyard_schemas::{Event, EventId, Namespace, PluginId};

use crate::error::{ApiError, ErrorKind};
use crate::request::ExplainFrom;
use crate::views::rfc3339;

/// Publishes a package file's bytes to the package store (recorded as `package_published`).
/// It is read and checked as a package first; verifying its signature is for installing it.
///
/// # Errors
/// `bad-request` for bytes that are not a package; `conflict` when another package is
/// published as the same version and `replace` is not given.
pub(crate) async fn publish_package(
    js: &jetstream::Context,
    namespace: &Namespace,
    registry: &switchyard_control::registry::Registry,
    auditor: &Auditor,
    bytes: bytes::Bytes,
    replace: bool,
) -> Result<Value, ApiError> {
    let package = Package::from_bytes(bytes)
        .map_err(|e| ApiError::bad_request(format!("not a package: {e}")))?;
    let manifest = package
        .manifest()
        .map_err(|e| ApiError::bad_request(format!("the package's manifest: {e}")))?;
    if replace {
        refuse_replacing_installed(registry, &manifest).await?;
    }
    let store = PackageStore::open(js, namespace).await?;
    let (object, outcome) = match store.publish(&package, replace).await {
        Ok(done) => done,
        Err(error @ switchyard_control::package::StoreError::VersionExists { .. }) => {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("{error} (an admin may replace it with `replace`)"),
            ))
        }
        Err(other) => return Err(other.into()),
    };
    let signer = signer_of(&package);
    let what = outcome.describe();
    if outcome != Published::Unchanged {
        let entry = auditor
            .entry(Action::PackagePublished, &object)
            .detail(format!(
                "{what} {object} ({} bytes, sha256 {}, {signer})",
                package.bytes().len(),
                package.sha256()
            ));
        auditor.append(&entry).await?;
    }
    Ok(json!({
        "object": object,
        "plugin": manifest.plugin.id,
        "version": manifest.plugin.version.to_string(),
        "sha256": package.sha256(),
        "size": package.bytes().len(),
        "signer": signer,
        "outcome": outcome.as_str(),
        "message": format!("{what} {object} in {} ({} bytes, {signer})", store.bucket(), package.bytes().len()),
    }))
}

/// Refuses to replace the package of a version that is installed (or waits for approval):
/// its hosts would find other bytes than the ones verified and approved, and its instances
/// could not start again.
async fn refuse_replacing_installed(
    registry: &switchyard_control::registry::Registry,
    manifest: &switchyard_schemas::Manifest,
) -> Result<(), ApiError> {
    let object =
        switchyard_control::package::object_name(&manifest.plugin.id, &manifest.plugin.version);
    let Some(registration) = registry.get(&manifest.plugin.id).await? else {
        return Ok(());
    };
    let installed_from = |provenance: Option<&switchyard_control::registry::Provenance>| {
        provenance.is_some_and(|p| p.package.as_deref() == Some(object.as_str()))
    };
    let pending = registration
        .pending_upgrade
        .as_ref()
        .is_some_and(|p| installed_from(p.provenance.as_ref()));
    if installed_from(registration.provenance.as_ref()) || pending {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "{object} is installed (or waits for approval): replacing it would change the \
                 bytes its hosts run; publish the change as a new version"
            ),
        ));
    }
    Ok(())
}

/// Each stream's settings, contents and placement.
///
/// # Errors
/// `unavailable` when a stream cannot be read (not provisioned, included).
pub(crate) async fn streams_info(bus: &Bus) -> Result<Value, ApiError> {
    let streams = bus.streams();
    let mut reports = Vec::new();
    for settings in [&streams.events, &streams.dead_letters, &streams.audit] {
        reports.push(
            stream_report(bus.jetstream(), settings)
                .await
                .map_err(ApiError::unavailable)?,
        );
    }
    Ok(json!({ "streams": reports }))
}

/// Creates or updates the streams and buckets (recorded as `streams_provisioned`).
///
/// # Errors
/// `conflict` when the server refuses the settings; `unavailable` otherwise.
pub(crate) async fn provision(
    bus: &Bus,
    auditor: &Auditor,
    limits: &Limits,
) -> Result<Value, ApiError> {
    let done = provision::provision(bus, limits).await.map_err(|error| {
        use switchyard_bus::ProvisionError as P;
        use switchyard_dispatcher::provision::ProvisionAllError as E;
        let kind = match &error {
            E::Stream(P::Refused { .. } | P::Incompatible { .. }) => ErrorKind::Conflict,
            E::BadLimit(_) => ErrorKind::BadRequest,
            _ => ErrorKind::Unavailable,
        };
        ApiError::new(kind, error.to_string())
    })?;
    let lines: Vec<String> = done
        .iter()
        .map(|d| {
            format!(
                "{} ({}): {}",
                d.name,
                d.kind,
                provision::describe(d.outcome)
            )
        })
        .collect();
    let changed = done
        .iter()
        .filter(|d| d.outcome != switchyard_bus::Provisioned::Unchanged)
        .count();
    let entry = auditor
        .entry(Action::StreamsProvisioned, bus.namespace().to_string())
        .detail(format!(
            "replicas {}; {changed} created or updated: {}",
            limits.replicas,
            lines.join("; ")
        ));
    auditor.append(&entry).await?;
    let items: Vec<Value> = done
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "kind": d.kind,
                "outcome": provision::describe(d.outcome),
            })
        })
        .collect();
    Ok(json!({
        "provisioned": items,
        "message": format!("{changed} of {} created or updated", done.len()),
    }))
}

/// Where the event is for each plugin subscribed to its type.
///
/// # Errors
/// `not-found` when no event with the id is stored where the search looked.
pub(crate) async fn explain(
    bus: &Bus,
    event_id: &EventId,
    from: ExplainFrom,
) -> Result<Value, ApiError> {
    let from = match from {
        ExplainFrom::Start => SearchFrom::Start,
        ExplainFrom::Time(time) => SearchFrom::Time(time),
        ExplainFrom::Sequence(sequence) => SearchFrom::Sequence(sequence),
    };
    let explanation = explain_event(bus, event_id.as_str(), from)
        .await
        .map_err(ApiError::unavailable)?;
    if explanation.copies.is_empty() {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!(
                "no event with id `{event_id}` is stored in `{}` where the search looked: it \
                 was never stored, or the stream's limits removed it",
                bus.streams().events.name
            ),
        ));
    }
    serde_json::to_value(&explanation)
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
}

/// The newest `lines` lines `plugin`'s workers wrote, oldest first.
///
/// # Errors
/// `unavailable` when the logs cannot be read.
pub(crate) async fn logs(
    js: &jetstream::Context,
    namespace: &Namespace,
    plugin: &PluginId,
    lines: usize,
) -> Result<Value, ApiError> {
    let read = switchyard_host::logs::read(js, namespace, plugin, lines)
        .await
        .map_err(ApiError::unavailable)?;
    let Some((found, _more)) = read else {
        return Ok(json!({
            "plugin": plugin,
            "lines": [],
            "message": "no host has run a worker in this deployment yet: no logs",
        }));
    };
    let lines: Vec<Value> = found
        .iter()
        .map(|line| {
            json!({
                "at": rfc3339(line.at),
                "instance": line.slot,
                "host": line.host,
                "stream": line.stream,
                "text": line.text,
            })
        })
        .collect();
    let message = if lines.is_empty() {
        format!("no output from `{plugin}`'s workers is kept")
    } else {
        format!("{} lines", lines.len())
    };
    Ok(json!({ "plugin": plugin, "lines": lines, "message": message }))
}

/// Publishes `event` (recorded as `event_published`, with its stored sequence).
///
/// # Errors
/// `unavailable` when it is not stored.
pub(crate) async fn publish_event(
    bus: &Bus,
    auditor: &Auditor,
    event: &Event,
) -> Result<Value, ApiError> {
    let publisher = bus.publisher(crate::request::deploy::CONSOLE_SOURCE);
    let receipt = publisher
        .publish_event(event)
        .await
        .map_err(ApiError::unavailable)?;
    let attributes = &event.attributes;
    let entry = auditor
        .entry(
            Action::EventPublished,
            format!("{} for {}", attributes.event_type, attributes.tenant),
        )
        .detail(format!(
            "event {} stored as sequence {} in {}{}",
            receipt.id,
            receipt.sequence,
            receipt.stream,
            if receipt.duplicate {
                " (a duplicate: nothing new was stored)"
            } else {
                ""
            }
        ));
    auditor.append(&entry).await?;
    Ok(json!({
        "id": receipt.id.to_string(),
        "stream": receipt.stream,
        "sequence": receipt.sequence,
        "duplicate": receipt.duplicate,
        "message": if receipt.duplicate {
            format!(
                "event {} was stored before, as sequence {} in {}: a duplicate, nothing new was stored",
                receipt.id, receipt.sequence, receipt.stream
            )
        } else {
            format!("stored event {} as sequence {} in {}", receipt.id, receipt.sequence, receipt.stream)
        },
    }))
}
