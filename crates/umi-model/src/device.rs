//! Where tensors live: one code path, a runtime choice of backend (burn 0.22's `Device`).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::{Error, Result};

/// The compute backends umi is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (`flex`): tests, CI, machines without a GPU.
    Cpu,
    /// wgpu: Vulkan / Metal / DX12 natively (lavapipe without a GPU), WebGPU in the browser.
    Wgpu,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
        })
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" | "flex" => Ok(Backend::Cpu),
            "wgpu" | "gpu" => Ok(Backend::Wgpu),
            other => Err(Error::Device(format!(
                "unknown backend {other:?} (expected cpu or wgpu)"
            ))),
        }
    }
}

impl Backend {
    /// Initialises the backend's default device (synchronously; native only for wgpu — the
    /// browser must use `Device::wgpu_options().init_async()`).
    ///
    /// # Errors
    ///
    /// [`Error::Device`] if the backend was not compiled in or no adapter is found.
    pub fn device(self) -> Result<Device> {
        match self {
            #[cfg(feature = "flex")]
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(all(feature = "wgpu", not(target_family = "wasm")))]
            Backend::Wgpu => Device::wgpu_options()
                .init()
                .map_err(|e| Error::Device(format!("wgpu initialisation failed: {e}"))),
            #[allow(unreachable_patterns)]
            other => Err(Error::Device(format!(
                "backend {other} is not compiled into this build (enable the `{}` feature)",
                if other == Backend::Cpu {
                    "flex"
                } else {
                    "wgpu"
                }
            ))),
        }
    }
}
