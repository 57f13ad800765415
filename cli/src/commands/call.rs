//! `switchyard call`: call a plugin's operation and print its answer and the time it took.

use std::time::Duration;

use async_nats::HeaderMap;
use clap::Args;
use serde::Serialize;
use switchyard_bus::{CallTarget, Calls};
use switchyard_schemas::call::{CallOptions, Caller, MAX_CALL_ATTEMPTS};
use switchyard_schemas::{ContentType, OperationName, PluginId, ServiceName, Tenant};

use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::{parse_plugin_id, parse_tenant};

/// The caller id of a call made by this command as an operator.
const OPERATOR_NAME: &str = "cli";

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// The plugin that answers the operation.
    #[arg(value_parser = parse_plugin_id)]
    plugin: PluginId,
    /// The operation.
    #[arg(value_parser = parse_operation)]
    operation: OperationName,
    /// The tenant the call is for.
    #[arg(long, value_parser = parse_tenant)]
    tenant: Tenant,
    /// The request, as JSON text [default: {}].
    #[arg(long)]
    data: Option<String>,
    /// How long to wait for the answer, e.g. `2s` [default: the operation's timeout, at most
    /// 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Attempts allowed, 1 to 10; more than one is used only by an idempotent operation.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CALL_ATTEMPTS)))]
    attempts: Option<u32>,
    /// Call as this service login (its inbox is then the service's own) instead of as an
    /// operator.
    #[arg(long = "as-service", value_name = "SERVICE", value_parser = parse_service)]
    service: Option<ServiceName>,
}

fn parse_operation(raw: &str) -> Result<OperationName, String> {
    OperationName::new(raw).map_err(|e| e.to_string())
}

fn parse_service(raw: &str) -> Result<ServiceName, String> {
    ServiceName::new(raw).map_err(|e| e.to_string())
}

/// An answer, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Answered {
    response: serde_json::Value,
    attempts: u32,
    /// From sending the call to its answer, seen from here.
    took_ms: f64,
    /// The time the dispatcher waited for the plugin, all attempts together.
    handled_ms: f64,
}

/// A failed call, as `--json` prints it (the command then exits non-zero).
#[derive(Debug, Serialize)]
struct Failed {
    error: FailedCall,
}

#[derive(Debug, Serialize)]
struct FailedCall {
    code: String,
    /// NATS micro's number for it.
    status: u16,
    reason: String,
    retry_after_ms: Option<u128>,
}

pub(crate) async fn run(args: CallArgs) -> Result<(), CliError> {
    let data = args.data.as_deref().unwrap_or("{}");
    // Checked here, so that a typo is named before anything is sent.
    let request: serde_json::Value =
        serde_json::from_str(data).map_err(|error| CliError::BadArgument {
            argument: "--data",
            reason: format!("not JSON: {error}"),
        })?;
    let namespace = args.namespace.prefix.clone();
    let (caller, inbox) = match &args.service {
        Some(service) => (
            Caller::Service(service.clone()),
            Some(namespace.service_inbox_prefix(service)),
        ),
        None => (Caller::Operator(OPERATOR_NAME.to_owned()), None),
    };
    let mut options = args.nats.connect_options()?;
    options.inbox_prefix = inbox;
    let client = options.connect().await?;
    let calls = Calls::new(client, namespace, caller);
    let target = CallTarget {
        tenant: args.tenant,
        plugin: args.plugin,
        operation: args.operation,
    };
    let call_options = CallOptions {
        timeout: args.timeout,
        attempts: args.attempts,
        version: None,
    };
    let body = serde_json::to_vec(&request).expect("a JSON value serializes");
    let reply = match calls
        .call_raw(
            &target,
            ContentType::Json,
            body.into(),
            &call_options,
            HeaderMap::new(),
        )
        .await
    {
        Ok(reply) => reply,
        Err(error) => {
            if args.output.json {
                print_json(&Failed {
                    error: FailedCall {
                        code: error.code.to_string(),
                        status: error.kind.status(),
                        reason: error.reason.clone(),
                        retry_after_ms: error.retry_after.map(|after| after.as_millis()),
                    },
                })?;
            }
            return Err(CliError::CallFailed {
                plugin: target.plugin.clone(),
                operation: target.operation.clone(),
                error,
            });
        }
    };
    let response: serde_json::Value = match reply.content_type {
        ContentType::Json => serde_json::from_slice(&reply.body),
        ContentType::MessagePack => {
            rmp_serde::from_slice(&reply.body).map_err(|e| serde::de::Error::custom(e.to_string()))
        }
    }
    .map_err(|error| CliError::Nats {
        action: "read the answer",
        reason: format!(
            "it is not a {} value: {error}",
            reply.content_type.media_type()
        ),
    })?;
    let took_ms = reply.elapsed.as_secs_f64() * 1000.0;
    let handled_ms = reply.handled_in.as_secs_f64() * 1000.0;
    if args.output.json {
        return print_json(&Answered {
            response,
            attempts: reply.attempts,
            took_ms,
            handled_ms,
        });
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&response).expect("a JSON value serializes")
    );
    let attempts = match reply.attempts {
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    };
    eprintln!("answered in {took_ms:.1} ms ({handled_ms:.1} ms in the plugin, {attempts})");
    Ok(())
}
