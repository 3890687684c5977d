//! JavaScript glue both sides need.

use js_sys::Reflect;
use wasm_bindgen::JsValue;

/// A thrown JavaScript value as text: the string itself, its `message`, or its debug form.
pub fn js_error(e: JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    Reflect::get(&e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}
