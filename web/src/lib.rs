//! `umi-web`: the α-UMi agent in the browser. A leptos CSR page (`umi-web` binary) and a model
//! worker (`umi-worker` binary), built by trunk, running umi's models on WebGPU through burn's
//! wgpu backend.
//!
//! Only rendering and wiring live here; the model, the agent loop and the tools are the crates
//! the native `umi` binary uses (`umi-model`, `umi-agent`, `umi-tools`). The worker owns the GPU,
//! the models and the agent, so that kernel compilation and forward passes never block the page.
//!
//! Build and serve with `trunk serve` (or `trunk build --release`) from the repository root.
//! Everything is wasm32-only: natively this crate is empty.
#![cfg(target_arch = "wasm32")]

// the page (window thread) and the model worker (a dedicated worker): the folder says which
// side of `postMessage` a file runs on
mod page;
mod worker;
// both sides
mod js;
mod protocol;

pub use page::app::App;
pub use worker::engine::start as start_worker;

/// Runs the module's static constructors (cubecl's `inventory` registrations) once.
///
/// `build.rs` exports `__wasm_call_ctors`, which stops wasm-ld from calling it at the top of
/// every export (each call from JavaScript into wasm re-ran every constructor); it is called
/// here instead, through the instance's exports (safe code: the call goes out to JavaScript and
/// back in). Call it first thing in `main`.
///
/// # Panics
///
/// If the module does not export `__wasm_call_ctors` (a build without `build.rs`).
pub fn run_constructors() {
    use wasm_bindgen::{JsCast, JsValue};
    let exports = wasm_bindgen::exports();
    let ctors = js_sys::Reflect::get(&exports, &JsValue::from_str("__wasm_call_ctors"))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .expect("the module exports __wasm_call_ctors (web/build.rs)");
    ctors
        .call0(&JsValue::NULL)
        .expect("static constructors ran");
}
