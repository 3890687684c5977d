//! Small form controls shared by the page's sections.

use leptos::prelude::*;
use umi_data::Role;

/// A `<select>` of the three α-UMi roles (planner, caller, summarizer) bound to `role`.
#[component]
pub fn RoleSelect(
    /// The element id.
    id: &'static str,
    /// The selected role.
    role: RwSignal<Role>,
) -> impl IntoView {
    view! {
        <select
            id=id
            prop:value=move || role.get().as_str()
            on:change=move |ev| {
                if let Ok(r) = event_target_value(&ev).parse() {
                    role.set(r)
                }
            }
        >
            <option value="planner">"planner"</option>
            <option value="caller">"caller"</option>
            <option value="summarizer">"summarizer"</option>
        </select>
    }
}
