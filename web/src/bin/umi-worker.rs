//! The model worker of `umi-web` (see the crate docs): WebGPU, models and the agent, driven by
//! the page's messages.

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    umi_web::run_constructors();
    umi_web::start_worker();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    println!("umi-worker runs in the browser, started by the umi-web page: trunk serve");
}
