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

/// What the WebGPU / wgpu adapter offers, for the user and for fit checks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuInfo {
    /// Adapter name (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`; often empty in browsers).
    pub name: String,
    /// Vendor / architecture as the adapter reports them (browsers: e.g. `google swiftshader`).
    pub vendor: String,
    /// Graphics API behind it (`Vulkan`, `BrowserWebGpu`, ...).
    pub backend: String,
    /// Device type (`DiscreteGpu`, `IntegratedGpu`, `Cpu`, ...).
    pub device_type: String,
    /// Largest storage-buffer binding in bytes: no single weight tensor may exceed it.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer in bytes.
    pub max_buffer_size: u64,
    /// Whether `shader-f16` is available.
    pub shader_f16: bool,
}

impl GpuInfo {
    /// A one-line summary for status bars.
    pub fn summary(&self) -> String {
        let name = [self.name.as_str(), self.vendor.as_str()]
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        format!(
            "{} ({}, {}; largest binding {} MiB; f16 {})",
            if name.is_empty() {
                "unnamed adapter"
            } else {
                &name
            },
            self.backend,
            self.device_type,
            self.max_storage_buffer_binding_size >> 20,
            if self.shader_f16 {
                "available"
            } else {
                "unavailable"
            }
        )
    }
}

/// Initialises wgpu asynchronously — the only way in a browser, where it is WebGPU — and
/// reports the adapter. burn (cubecl) requests the adapter's own limits and features, so
/// buffers up to [`GpuInfo::max_storage_buffer_binding_size`] can be bound.
///
/// # Errors
///
/// [`Error::Device`] when there is no adapter (in a browser: WebGPU missing or disabled) or the
/// device cannot be created.
#[cfg(feature = "wgpu")]
pub async fn wgpu_device_async() -> Result<(Device, GpuInfo)> {
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| Error::Device(format!("WebGPU/wgpu initialisation failed: {e}")))?;
    let info = setup.adapter.get_info();
    let limits = setup.device.limits();
    let features = setup.device.features();
    let gpu = GpuInfo {
        name: info.name.clone(),
        vendor: [info.driver.as_str(), info.driver_info.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        shader_f16: features.contains(burn::tensor::wgpu::wgpu::Features::SHADER_F16),
    };
    Ok((device, gpu))
}
