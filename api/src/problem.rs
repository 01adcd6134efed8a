//! RFC 7807 problem details: every error the API answers with, as
//! `application/problem+json`, and the extractors that turn malformed requests into them.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::FromRequest;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field at fault in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's name (dotted for nested ones, e.g. `inputs.0.path`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An RFC 7807 problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, in one line.
    pub detail: String,
    /// Fields at fault, when the request body or query was invalid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem with `status`, its canonical reason as the title, and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            type_uri: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("error").to_lowercase(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 400: the request could not be read.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409: the resource's state does not allow the action.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 422 with the field at fault.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: {message}"),
        );
        p.type_uri = "/problems/invalid-request".into();
        p.errors.push(FieldError {
            field: field.into(),
            message,
        });
        p
    }

    /// 500 for a failure of ours; the detail names what failed, never internals.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// 503: a dependency (the database) is not answering.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response()
    }
}

impl From<scheduler::SchedulerError> for Problem {
    fn from(e: scheduler::SchedulerError) -> Self {
        match e {
            scheduler::SchedulerError::InvalidSpec(m) => Self::invalid("job", m),
            scheduler::SchedulerError::Db(sqlx_error) => {
                Self::unavailable(format!("the database failed: {sqlx_error}"))
            }
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => {
                // serde's message names the path and what was expected.
                let text = e.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .unwrap_or(&text);
                let (field, message) = match detail.split_once(": ") {
                    Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
                    _ => ("body".to_string(), detail.to_string()),
                };
                Self::invalid(&field, message)
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as application/json",
            ),
            JsonRejection::BytesRejection(e) => Self::new(e.status(), e.body_text().to_lowercase()),
            other => Self::bad_request(format!("malformed json: {}", other.body_text())),
        }
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        let (field, message) = match detail.split_once(": ") {
            Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
            _ => ("query".to_string(), detail.to_string()),
        };
        Self::invalid(&field, message)
    }
}

impl From<PathRejection> for Problem {
    fn from(r: PathRejection) -> Self {
        Self::not_found(format!("no such resource: {}", r.body_text()))
    }
}

/// `axum::Json` whose rejections are problems.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejections are problems.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejections are problems.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct Path<T>(pub T);

/// The result of a handler.
pub type ApiResult<T> = Result<T, Problem>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_the_field_and_sets_422() {
        let p = Problem::invalid("tile_px", "must be between 16 and 16384");
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "tile_px");
        assert_eq!(p.detail, "tile_px: must be between 16 and 16384");
        let r = p.into_response();
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
