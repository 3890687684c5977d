//! The page (the `umi-web` binary, the window's thread): it renders and sends messages; nothing
//! here touches a model.

pub mod adapters;
pub mod app;
pub mod finetune;
pub mod storage;
pub mod trace;
pub mod widgets;
pub mod worker_link;
