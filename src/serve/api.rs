//! The HTTP interface: the page and a small JSON/PNG API. Every request carries the token the
//! server printed (`?token=` or the `X-Genseg-Token` header); URLs name images by id, which is
//! looked up among the data folder's images and never used as a path.
use super::app::{lock, App};
use super::model;
use super::project::SaveError;
use super::queue::Strategy;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::sync::Arc;

/// The largest request body: a mask PNG of a very large photograph fits well inside.
pub const MAX_BODY: usize = 32 << 20;

const PAGE: &str = include_str!("page.html");

pub fn router(app: Arc<App>, token: String) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/state", get(state))
        .route("/api/queue", get(queue))
        .route("/api/images/{id}/image", get(image))
        .route("/api/images/{id}/mask", get(mask).put(save))
        .route("/api/images/{id}/proposal", get(proposal))
        .route("/api/images/{id}/skip", post(skip))
        .route("/api/train", post(train))
        .route("/api/strategy", put(strategy))
        .fallback(|| async { fail(StatusCode::NOT_FOUND, "no such page; open the URL genseg serve printed") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(Arc::new(token), require_token))
        .with_state(app)
}

fn fail(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn png(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")], bytes).into_response()
}

/// Refuses every request without the server's token (compared in constant time).
async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    let from_query =
        request.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_string));
    let from_header = request.headers().get("x-genseg-token").and_then(|v| v.to_str().ok()).map(str::to_string);
    let given = from_header.or(from_query).unwrap_or_default();
    let same =
        given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return fail(StatusCode::UNAUTHORIZED, "missing or wrong token: open the full URL genseg serve printed");
    }
    next.run(request).await
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

async fn state(State(app): State<Arc<App>>) -> Response {
    Json(app.state()).into_response()
}

async fn queue(State(app): State<Arc<App>>) -> Response {
    match tokio::task::spawn_blocking(move || (app.queue(), app.annotated_ids())).await {
        Ok((queue, annotated)) => Json(serde_json::json!({ "queue": queue, "annotated": annotated })).into_response(),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")),
    }
}

/// Runs `work` on image `id` off the async threads: 404 for an unknown id, 500 with the message
/// for a failure.
async fn on_image<F>(app: Arc<App>, id: String, work: F) -> Response
where
    F: FnOnce(&App, usize) -> Result<Response, String> + Send + 'static,
{
    let Some(i) = lock(&app.project).find(&id) else {
        return fail(StatusCode::NOT_FOUND, format!("no image with id '{id}' in the data folder"));
    };
    match tokio::task::spawn_blocking(move || work(&app, i)).await {
        Ok(Ok(response)) => response,
        Ok(Err(message)) => fail(StatusCode::INTERNAL_SERVER_ERROR, message),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")),
    }
}

fn encode_png(img: &image::DynamicImage) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// The image as PNG, as genseg reads it (EXIF orientation applied; TIFF and 16-bit made viewable).
async fn image(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    on_image(app, id, |app, i| {
        let img = crate::data::image_io::decode_image(&app.images[i].file).map_err(|e| format!("{e:#}"))?;
        Ok(png(encode_png(&image::DynamicImage::ImageRgb8(img.to_rgb8()))?))
    })
    .await
}

/// The current mask (0/255 PNG) and its version in X-Mask-Version; 404 when there is none.
async fn mask(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    on_image(app, id, |app, i| {
        let (file, version) = {
            let project = lock(&app.project);
            (project.mask_file(i), project.version(i))
        };
        let Some(file) = file else {
            return Ok(fail(StatusCode::NOT_FOUND, "this image has no mask yet"));
        };
        let m = crate::data::image_io::decode_mask(&file, true).map_err(|e| format!("{e:#}"))?;
        let mut response = png(encode_png(&image::DynamicImage::ImageLuma8(m.mask))?);
        response.headers_mut().insert("x-mask-version", version.into());
        Ok(response)
    })
    .await
}

/// The current model's mask for the image; 404 while there is no model.
async fn proposal(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    on_image(app, id, |app, i| {
        let guard = lock(&app.model);
        let Some(m) = &*guard else {
            return Ok(fail(StatusCode::NOT_FOUND, "no model yet: annotate images and train one"));
        };
        let mask = model::proposal(m, &app.images[i].file, app.device).map_err(|e| format!("{e:#}"))?;
        let mut response = png(encode_png(&image::DynamicImage::ImageLuma8(mask))?);
        response.headers_mut().insert("x-model-version", m.version.into());
        Ok(response)
    })
    .await
}

/// Saves a mask PNG over version X-Mask-Version: 200 with the new version, 409 when another
/// save came first, 422 for a PNG that is not a mask of the image.
async fn save(State(app): State<Arc<App>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let base = headers.get("x-mask-version").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u32>().ok());
    let Some(base) = base else {
        return fail(
            StatusCode::BAD_REQUEST,
            "send the version the mask replaces in the X-Mask-Version header (0 for a first save)",
        );
    };
    let saved = tokio::task::spawn_blocking(move || app.save(&id, base, &body).map_err(|e| (e, id))).await;
    match saved {
        Ok(Ok(version)) => Json(serde_json::json!({ "version": version })).into_response(),
        Ok(Err((SaveError::Conflict { current }, _))) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": format!("this mask was saved elsewhere (now version {current}) after you loaded version {base}; reload the image and redo your change"),
                "current_version": current,
            })),
        )
            .into_response(),
        Ok(Err((SaveError::Invalid(why), _))) => fail(StatusCode::UNPROCESSABLE_ENTITY, why),
        Ok(Err((SaveError::NotFound, id))) => fail(StatusCode::NOT_FOUND, format!("no image with id '{id}' in the data folder")),
        Ok(Err((SaveError::Io(e), _))) => fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")),
    }
}

async fn skip(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let mut project = lock(&app.project);
    if project.find(&id).is_none() {
        return fail(StatusCode::NOT_FOUND, format!("no image with id '{id}' in the data folder"));
    }
    match project.skip(&id) {
        Ok(()) => Json(serde_json::json!({ "skipped": id })).into_response(),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn train(State(app): State<Arc<App>>) -> Response {
    match app.retrain() {
        Ok(version) => (StatusCode::ACCEPTED, Json(serde_json::json!({ "training": version }))).into_response(),
        Err(why) => fail(StatusCode::CONFLICT, why),
    }
}

async fn strategy(State(app): State<Arc<App>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Asked {
        strategy: Strategy,
    }
    match serde_json::from_slice::<Asked>(&body) {
        Ok(Asked { strategy }) => {
            *lock(&app.strategy) = strategy;
            Json(serde_json::json!({ "strategy": strategy.name() })).into_response()
        }
        Err(_) => fail(StatusCode::BAD_REQUEST, "send {\"strategy\": \"random\" | \"uncertainty\" | \"diverse\"}"),
    }
}
