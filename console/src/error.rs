//! The errors of the management API: a kind a client can match, with its HTTP status and code.

use serde::Serialize;

/// What kind of failure: decides the HTTP status and the stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorKind {
    /// No token, a malformed one, or one no operator has.
    Unauthenticated,
    /// The operator's role does not allow the call, or the request came from another site.
    Forbidden,
    /// Arguments that cannot be read.
    BadRequest,
    /// No such plugin, dead letter, operator or route.
    NotFound,
    /// A change refused by its checks.
    Conflict,
    /// A body larger than the call reads.
    PayloadTooLarge,
    /// NATS, a stream or a bucket could not be reached.
    Unavailable,
    /// Anything else.
    Internal,
}

impl ErrorKind {
    /// The HTTP status (also the NATS micro error code).
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::BadRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The stable code, e.g. `management.forbidden`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Unauthenticated => "management.unauthenticated",
            ErrorKind::Forbidden => "management.forbidden",
            ErrorKind::BadRequest => "management.bad-request",
            ErrorKind::NotFound => "management.not-found",
            ErrorKind::Conflict => "management.conflict",
            ErrorKind::PayloadTooLarge => "management.payload-too-large",
            ErrorKind::Unavailable => "management.unavailable",
            ErrorKind::Internal => "management.internal",
        }
    }
}

/// A failed call of the management API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind.
    pub kind: ErrorKind,
    /// For a person: what went wrong, naming the problem.
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// [`ErrorKind::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// [`ErrorKind::Unavailable`], for what could not be read or written.
    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Unavailable, error.to_string())
    }

    /// The JSON body: `{"error": {"code", "status", "message"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "code": self.kind.code(),
                "status": self.kind.status(),
                "message": self.message,
            }
        })
    }
}

impl From<switchyard_control::lifecycle::operate::OperateError> for ApiError {
    fn from(error: switchyard_control::lifecycle::operate::OperateError) -> Self {
        use switchyard_control::lifecycle::operate::OperateError as E;
        let kind = match &error {
            E::NotRegistered { .. } => ErrorKind::NotFound,
            E::Incompatible { .. } | E::NoTarget(_) | E::KeptChanging { .. } => ErrorKind::Conflict,
            E::BadChange(_) | E::NeedsTenants(_) | E::TenantsWithUpgrade(_) => {
                ErrorKind::BadRequest
            }
            E::NotInstalled(_) | E::NoPackage(_) => ErrorKind::NotFound,
            E::Refused(_) => ErrorKind::Conflict,
            E::PackageStore(store)
                if matches!(
                    **store,
                    switchyard_control::package::StoreError::VersionExists { .. }
                ) =>
            {
                ErrorKind::Conflict
            }
            E::PackageStore(_) | E::Trust(_) => ErrorKind::Unavailable,
            E::Settings(switchyard_control::settings::SettingsError::Refused(_)) => {
                ErrorKind::BadRequest
            }
            E::Settings(switchyard_control::settings::SettingsError::Contended(_)) => {
                ErrorKind::Conflict
            }
            E::Registry(_) | E::Settings(_) | E::Credentials(_) | E::Audit(_) => {
                ErrorKind::Unavailable
            }
        };
        Self::new(kind, error.to_string())
    }
}

impl From<switchyard_dispatcher::redrive::RedriveError> for ApiError {
    fn from(error: switchyard_dispatcher::redrive::RedriveError) -> Self {
        use switchyard_dispatcher::redrive::RedriveError as E;
        fn kind_of(error: &E) -> ErrorKind {
            match error {
                E::NotFound { .. } => ErrorKind::NotFound,
                E::WrongPlugin { .. } => ErrorKind::BadRequest,
                E::NoConsumer { .. } | E::Malformed { .. } | E::NotReplayable { .. } => {
                    ErrorKind::Conflict
                }
                // A replay or purge that stopped partway fails for what stopped it.
                E::Interrupted { source, .. } => kind_of(source),
                _ => ErrorKind::Unavailable,
            }
        }
        let message = match &error {
            E::Interrupted { source, .. } => format!("{error}: {source}"),
            other => other.to_string(),
        };
        Self::new(kind_of(&error), message)
    }
}

macro_rules! unavailable_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                Self::unavailable(error)
            }
        }
    )*};
}

unavailable_from!(
    switchyard_control::registry::RegistryError,
    switchyard_control::audit::AuditError,
    switchyard_control::auth::AuthError,
    switchyard_control::settings::SettingsError,
    switchyard_control::package::TrustError,
    switchyard_control::package::StoreError,
);
