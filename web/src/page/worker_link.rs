//! The page's end of the worker: its handle and the one way to send it a message.

use leptos::prelude::*;
use web_sys::Worker;

use crate::js::js_error;
use crate::protocol::{ToWorker, encode};

/// The model worker, once started.
pub(crate) type WorkerHandle = StoredValue<Option<Worker>, LocalStorage>;

/// Shares `worker` with every component below the caller (leptos context), so that sections
/// post to it without passing it down.
pub(crate) fn provide_worker(worker: WorkerHandle) {
    provide_context(worker);
}

/// The page's worker handle, as [`provide_worker`] shared it.
///
/// # Panics
///
/// Outside the component tree of the page's `App` (a programming error).
pub(crate) fn use_worker() -> WorkerHandle {
    expect_context::<WorkerHandle>()
}

/// Sends `message` (with transferable `files`) to the model worker.
///
/// # Errors
///
/// When the worker is not running or `postMessage` fails.
pub(crate) fn post(
    worker: WorkerHandle,
    message: &ToWorker,
    files: Option<&js_sys::Array>,
) -> Result<(), String> {
    worker.with_value(|w| match w {
        Some(w) => w.post_message(&encode(message, files)).map_err(js_error),
        None => Err("the model worker is not running".into()),
    })
}
