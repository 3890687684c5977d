//! What the server offers: the tool table, its docs (ToolBench format) and OpenAPI document,
//! and the bundled data (exchange rates, countries).

use super::*;

/// Tools that change the state: served on POST only, so a page cannot trigger them with a
/// plain link or image (and a cross-origin POST with a JSON body needs CORS approval first).
pub(super) const MUTATING: &[&str] = &[
    "add_todo",
    "complete_todo",
    "add_calendar_event",
    "set_alarm",
];

pub(super) fn mutates(name: &str) -> bool {
    MUTATING.contains(&name)
}

pub(super) const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "calculator",
        description: "Computes a op b for op in add, subtract, multiply, divide, power.",
        input: &[
            ("a", "number, first operand"),
            (
                "op",
                "string, one of add, subtract, multiply, divide, power",
            ),
            ("b", "number, second operand"),
        ],
    },
    ToolDef {
        name: "convert_units",
        description: "Converts a value between units of length (mm, cm, m, km, in, ft, yd, mi), mass (g, kg, lb, oz) or temperature (C, F, K).",
        input: &[
            ("value", "number, the amount"),
            ("from", "string, unit to convert from"),
            ("to", "string, unit to convert to"),
        ],
    },
    ToolDef {
        name: "convert_currency",
        description: "Converts an amount between currencies (EUR, USD, GBP, JPY, CHF, CNY, INR, CAD, AUD) with a bundled rate table (ECB reference rates of 2026-11-20).",
        input: &[
            ("amount", "number, the amount"),
            ("from", "string, ISO currency code"),
            ("to", "string, ISO currency code"),
        ],
    },
    ToolDef {
        name: "date_difference",
        description: "Number of days from start_date to end_date (YYYY-MM-DD).",
        input: &[
            ("start_date", "string, YYYY-MM-DD"),
            ("end_date", "string, YYYY-MM-DD"),
        ],
    },
    ToolDef {
        name: "add_days",
        description: "The date that is `days` days after (or before, if negative) `date`, with its weekday.",
        input: &[
            ("date", "string, YYYY-MM-DD"),
            ("days", "integer, days to add"),
        ],
    },
    ToolDef {
        name: "weekday",
        description: "The day of the week of a date (YYYY-MM-DD).",
        input: &[("date", "string, YYYY-MM-DD")],
    },
    ToolDef {
        name: "add_todo",
        description: "Adds an item to the to-do list and returns it with its id.",
        input: &[
            ("title", "string, what to do"),
            ("due_date", "string, optional YYYY-MM-DD"),
        ],
    },
    ToolDef {
        name: "list_todos",
        description: "Lists to-do items; set include_done to true to include completed ones.",
        input: &[("include_done", "boolean, optional")],
    },
    ToolDef {
        name: "complete_todo",
        description: "Marks the to-do item with this id as done.",
        input: &[("id", "integer, the item's id")],
    },
    ToolDef {
        name: "add_calendar_event",
        description: "Adds an event to the calendar.",
        input: &[
            ("title", "string, event name"),
            ("date", "string, YYYY-MM-DD"),
            ("time", "string, optional HH:MM"),
        ],
    },
    ToolDef {
        name: "list_calendar_events",
        description: "Lists calendar events, optionally only those on one date.",
        input: &[("date", "string, optional YYYY-MM-DD")],
    },
    ToolDef {
        name: "set_alarm",
        description: "Sets an alarm at a time (HH:MM) with an optional label.",
        input: &[("time", "string, HH:MM"), ("label", "string, optional")],
    },
    ToolDef {
        name: "list_alarms",
        description: "Lists the alarms that are set.",
        input: &[],
    },
    ToolDef {
        name: "country_info",
        description: "Facts about a country from a small bundled knowledge base: capital, population, currency, languages.",
        input: &[("country", "string, country name in English")],
    },
];

/// ECB-style reference rates: units of currency per 1 EUR.
pub(super) const RATES: &[(&str, f64)] = &[
    ("EUR", 1.0),
    ("USD", 1.0845),
    ("GBP", 0.8342),
    ("JPY", 166.87),
    ("CHF", 0.9361),
    ("CNY", 7.8410),
    ("INR", 91.52),
    ("CAD", 1.5176),
    ("AUD", 1.6698),
];

pub(super) const COUNTRIES: &[(&str, &str, u64, &str, &str)] = &[
    ("France", "Paris", 68_400_000, "EUR", "French"),
    ("Germany", "Berlin", 84_500_000, "EUR", "German"),
    ("Italy", "Rome", 58_900_000, "EUR", "Italian"),
    ("Spain", "Madrid", 48_600_000, "EUR", "Spanish"),
    ("United Kingdom", "London", 68_300_000, "GBP", "English"),
    (
        "United States",
        "Washington, D.C.",
        335_000_000,
        "USD",
        "English",
    ),
    ("Canada", "Ottawa", 40_100_000, "CAD", "English, French"),
    ("Japan", "Tokyo", 124_500_000, "JPY", "Japanese"),
    ("China", "Beijing", 1_410_000_000, "CNY", "Mandarin Chinese"),
    ("India", "New Delhi", 1_430_000_000, "INR", "Hindi, English"),
    (
        "Switzerland",
        "Bern",
        8_900_000,
        "CHF",
        "German, French, Italian, Romansh",
    ),
    ("Australia", "Canberra", 26_600_000, "AUD", "English"),
];

/// The tool docs (ToolBench format + `http`) for a server reachable at `base_url`.
pub fn tool_docs(base_url: &str) -> Value {
    let tools: Vec<Value> = TOOLS
        .iter()
        .map(|t| {
            let input: Map<String, Value> = t
                .input
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            let method = if mutates(t.name) { "POST" } else { "GET" };
            json!({"Name": t.name, "function": t.description, "input": input,
                   "http": {"method": method, "url": format!("{base_url}/tools/{}", t.name)}})
        })
        .collect();
    json!({ "tools": tools })
}

/// The tools as an OpenAPI 3 document (ToolAlpaca's `Documentation` format): read-only tools
/// as GET with query parameters, the ones that change state as POST with a JSON body.
pub fn openapi(base_url: &str) -> Value {
    let mut paths = Map::new();
    for t in TOOLS {
        let args: Vec<(&str, &str, &str, bool)> = t
            .input
            .iter()
            .map(|(k, v)| {
                let (ty, desc) = v.split_once(", ").unwrap_or((v, ""));
                let ty = match ty {
                    "number" => "number",
                    "integer" => "integer",
                    "boolean" => "boolean",
                    _ => "string",
                };
                (*k, ty, desc, !desc.starts_with("optional"))
            })
            .collect();
        let responses = json!({"200": {"description": "{\"error\": \"\", \"response\": …}"}, "400": {"description": "bad arguments"}});
        let operation = if mutates(t.name) {
            let properties: Map<String, Value> = args
                .iter()
                .map(|(k, ty, desc, _)| (k.to_string(), json!({"type": ty, "description": desc})))
                .collect();
            let required: Vec<&str> = args.iter().filter(|a| a.3).map(|a| a.0).collect();
            json!({"post": {"operationId": t.name, "summary": t.description,
                "requestBody": {"required": true, "content": {"application/json": {"schema":
                    {"type": "object", "properties": properties, "required": required}}}},
                "responses": responses}})
        } else {
            let params: Vec<Value> = args
                .iter()
                .map(|(k, ty, desc, required)| json!({"name": k, "in": "query", "required": required, "description": desc, "schema": {"type": ty}}))
                .collect();
            json!({"get": {"operationId": t.name, "summary": t.description, "parameters": params,
                "responses": responses}})
        };
        paths.insert(format!("/tools/{}", t.name), operation);
    }
    json!({"openapi": "3.0.3", "info": {"title": "umi demo tools", "version": env!("CARGO_PKG_VERSION")},
           "servers": [{"url": base_url}], "paths": paths})
}
