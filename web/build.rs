//! Links the wasm app so that static constructors run once, not on every call into wasm.
//!
//! cubecl registers its IR dialects with `inventory` (`.init_array` constructors). For a module
//! that never references `__wasm_call_ctors`, wasm-ld assumes a "command" called once and wraps
//! *every* export in a call to it, so each call from JavaScript into wasm (each WebGPU object
//! handed back through `__externref_table_alloc`, each callback) re-ran all constructors:
//! measured at about half of the main thread's time during generation. Exporting the symbol
//! turns the wrappers off; each binary's `main` then runs the constructors once
//! (`umi_web::run_constructors`).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-bins=--export=__wasm_call_ctors");
    }
}
