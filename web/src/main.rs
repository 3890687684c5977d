//! The page of `umi-web` (see the crate docs); the models run in the `umi-worker` binary.

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    umi_web::run_constructors();
    leptos::mount::mount_to_body(umi_web::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    println!("umi-web runs in the browser: trunk serve");
}
