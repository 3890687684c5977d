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

/// An `<input>` bound to `value` (a text field unless `kind` says otherwise; `min` and `step`
/// for number fields).
#[component]
pub fn TextInput(
    /// The element id.
    id: &'static str,
    /// The value.
    value: RwSignal<String>,
    /// Shown when empty.
    #[prop(optional)]
    placeholder: &'static str,
    /// `text` unless given.
    #[prop(default = "text")]
    kind: &'static str,
    /// The smallest number accepted (number fields).
    #[prop(optional)]
    min: Option<&'static str>,
    /// The step of the spinner (number fields).
    #[prop(optional)]
    step: Option<&'static str>,
) -> impl IntoView {
    view! {
        <input
            id=id
            type=kind
            placeholder=placeholder
            min=min
            step=step
            prop:value=value
            on:input=move |ev| value.set(event_target_value(&ev))
        />
    }
}
