//! Agent builds: `GET /api/v1/downloads` and one build's download.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

use super::*;

/// Lists the offerable agent builds.
#[utoipa::path(get, path = "/api/v1/downloads",
    responses(
        (status = 200, description = "the verified builds", body = [ReleaseView], links(
            ("download" = (operation_id = "download", parameters(("file" = "$response.body#/0/file"))))))))]
pub async fn list_downloads(
    State(state): State<AppState>,
) -> Result<Json<Vec<ReleaseView>>, ApiError> {
    let index = state.releases.index().await;
    Ok(Json(index.releases().map(release_view).collect()))
}

/// Serves one agent build: only names in the verified release index
/// (the file's SHA-256 matched its sidecar when it was last hashed, and
/// the file has not changed since), streamed from disk.
#[utoipa::path(get, path = "/api/v1/downloads/{file}",
    params(("file" = String, Path, description = "a build's file name")),
    responses(
        (status = 200, description = "the build", content(("application/octet-stream")),
            headers(("X-Checksum-Sha256" = String, description = "SHA-256 of the build, lowercase hex"))),
        (status = 400, description = "`invalid_id`: not UTF-8", body = ErrorBody),
        (status = 404, description = "`not_found`: no such verified build", body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    let open = state.releases.open(file).await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(open.file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, open.len.to_string()),
            (
                header::HeaderName::from_static("x-checksum-sha256"),
                open.release.sha256().to_string(),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
