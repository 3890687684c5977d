//! WebGPU start-up in the worker: the device every model is uploaded to, and what the adapter
//! offers.

use js_sys::Reflect;
use umi_model::{Device, GpuInfo};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::worker::scope::scope;

/// The worker's `navigator.gpu` (exposed to workers in secure contexts), if any.
fn navigator_gpu() -> Option<wasm_bindgen::JsValue> {
    Reflect::get(&scope().navigator(), &"gpu".into())
        .ok()
        .filter(|gpu| !gpu.is_undefined() && !gpu.is_null())
}

/// Starts WebGPU (asynchronously: the only way in a browser) and reports the adapter.
///
/// # Errors
///
/// Why there is no GPU: no `navigator.gpu`, no adapter, or the device could not be created.
pub async fn init() -> Result<(Device, GpuInfo), String> {
    if navigator_gpu().is_none() {
        return Err(if scope().is_secure_context() {
            "this browser has no navigator.gpu. Use a recent Chrome or Edge (or Firefox / Safari \
             with WebGPU enabled); headless Chromium needs --enable-unsafe-webgpu."
                .into()
        } else {
            "WebGPU needs a secure context: open the app over https or from localhost / \
             127.0.0.1."
                .into()
        });
    }
    let Some(adapter_name) = adapter_name().await else {
        return Err(
            "the browser has WebGPU but offers no adapter (WebGPU disabled or the GPU \
                    blocklisted: see chrome://gpu; headless Chromium needs \
                    --enable-unsafe-webgpu)."
                .into(),
        );
    };
    let (device, mut info) = umi_model::wgpu_device_async()
        .await
        .map_err(|e| format!("the WebGPU device could not be created: {e}"))?;
    if info.name.trim().is_empty() && info.vendor.trim().is_empty() {
        // wgpu's web backend leaves both empty; the browser's `GPUAdapter.info` names it
        info.name = adapter_name;
    }
    Ok((device, info))
}

/// `vendor architecture device description` of `navigator.gpu.requestAdapter()`'s `info`
/// (e.g. `google swiftshader (fallback adapter)`); `None` when there is no adapter.
async fn adapter_name() -> Option<String> {
    let gpu = navigator_gpu()?;
    let request: js_sys::Function = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let promise: js_sys::Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    if adapter.is_null() || adapter.is_undefined() {
        return None;
    }
    let info = Reflect::get(&adapter, &"info".into()).ok()?;
    let field = |name: &str| {
        Reflect::get(&info, &name.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let mut name = ["vendor", "architecture", "device", "description"]
        .map(field)
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let fallback = Reflect::get(&info, &"isFallbackAdapter".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if fallback {
        name.push_str(" (fallback adapter)");
    }
    Some(name)
}
