//! A demo tool server with real behaviour and state, for the agent's demos and tests:
//! arithmetic, unit and currency conversion (bundled rates), date arithmetic, a to-do list, a
//! calendar and alarms persisted to a JSON file, and a small country knowledge base.
//!
//! Routes (CORS for the web app's origin only, see [`ServeOptions`]):
//! - `GET /tools`: the tool docs in ToolBench format, each with its `http` endpoint;
//! - `GET /openapi.json`: the same tools as an OpenAPI 3 document;
//! - `GET /tools/{name}?arg=…` (read-only tools) or `POST /tools/{name}` with a JSON object
//!   (any tool; the only way to the ones that change state): runs the tool and answers
//!   `{"error": "", "response": …}` (status 400 with `error` set for bad arguments, 404 for
//!   unknown tools, 405 for a state-changing tool on GET or another method, 403 for a page
//!   from an origin not allowed).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tiny_http::{Header, Method, Response, Server};

/// Persistent state of the stateful tools.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    todos: Vec<Value>,
    events: Vec<Value>,
    alarms: Vec<Value>,
    next_id: u64,
}

impl State {
    /// Puts `item` into `list`, replacing the item with its `id` if there is one.
    fn upsert(&mut self, list: &str, item: Value) -> Result<(), String> {
        let items = match list {
            "todos" => &mut self.todos,
            "events" => &mut self.events,
            "alarms" => &mut self.alarms,
            other => return Err(format!("unknown list {other:?}")),
        };
        match items.iter_mut().find(|i| i["id"] == item["id"]) {
            Some(old) => *old = item,
            None => items.push(item),
        }
        Ok(())
    }

    /// The list holding the item with this `id` (a new item is the last of its list: found
    /// without a scan).
    fn list_of(&self, id: &Value) -> Option<&'static str> {
        let lists = [
            ("todos", &self.todos),
            ("events", &self.events),
            ("alarms", &self.alarms),
        ];
        lists
            .iter()
            .find(|(_, items)| items.last().is_some_and(|i| i["id"] == *id))
            .or_else(|| {
                lists
                    .iter()
                    .find(|(_, items)| items.iter().any(|i| i["id"] == *id))
            })
            .map(|(name, _)| *name)
    }
}

/// Writes since the last snapshot after which the journal is folded into a new snapshot.
const COMPACT_EVERY: usize = 1000;

/// The state and where it lives: a snapshot (`state_path`, replaced atomically) and a journal
/// beside it (`<state_path>.journal`, one JSON line per changed item, appended before a write
/// is acknowledged), folded into the snapshot at start-up and every [`COMPACT_EVERY`] writes.
/// A write costs one appended line, not a rewrite of the whole state; a kill at any moment
/// loses no acknowledged write.
struct Tools {
    state: Mutex<State>,
    state_path: PathBuf,
    journal: Mutex<Journal>,
}

#[derive(Default)]
struct Journal {
    file: Option<std::fs::File>,
    lines: usize,
}

type ToolResult = Result<Value, String>;

struct ToolDef {
    name: &'static str,
    description: &'static str,
    input: &'static [(&'static str, &'static str)],
}

/// Tools that change the state: served on POST only, so a page cannot trigger them with a
/// plain link or image (and a cross-origin POST with a JSON body needs CORS approval first).
const MUTATING: &[&str] = &[
    "add_todo",
    "complete_todo",
    "add_calendar_event",
    "set_alarm",
];

fn mutates(name: &str) -> bool {
    MUTATING.contains(&name)
}

const TOOLS: &[ToolDef] = &[
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
const RATES: &[(&str, f64)] = &[
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

const COUNTRIES: &[(&str, &str, u64, &str, &str)] = &[
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

fn num(args: &Map<String, Value>, key: &str) -> Result<f64, String> {
    match args.get(key) {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| format!("{key} is not a finite number")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("{key} must be a number, got {s:?}")),
        _ => Err(format!("missing number argument {key}")),
    }
}

fn text<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    args.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::trim)
        .ok_or_else(|| format!("missing string argument {key}"))
}

fn opt_text<'a>(args: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parse_date(s: &str) -> Result<i64, String> {
    let parts: Vec<&str> = s.split('-').collect();
    let bad = || format!("date {s:?} is not YYYY-MM-DD");
    let [y, m, d] = parts[..] else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let days = days_from_civil(y, m, d);
    if !(1..=12).contains(&m) || civil_from_days(days) != (y, m, d) {
        return Err(format!("date {s:?} does not exist"));
    }
    Ok(days)
}

fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn weekday_name(days: i64) -> &'static str {
    [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ][days.rem_euclid(7) as usize]
}

fn check_time(s: &str) -> Result<(), String> {
    let ok = s.split_once(':').is_some_and(|(h, m)| {
        h.parse::<u32>().is_ok_and(|h| h < 24)
            && m.len() == 2
            && m.parse::<u32>().is_ok_and(|m| m < 60)
    });
    if ok {
        Ok(())
    } else {
        Err(format!("time {s:?} is not HH:MM"))
    }
}

fn unit_factor(unit: &str) -> Option<(&'static str, f64)> {
    Some(match unit {
        "mm" => ("length", 0.001),
        "cm" => ("length", 0.01),
        "m" => ("length", 1.0),
        "km" => ("length", 1000.0),
        "in" => ("length", 0.0254),
        "ft" => ("length", 0.3048),
        "yd" => ("length", 0.9144),
        "mi" => ("length", 1609.344),
        "g" => ("mass", 0.001),
        "kg" => ("mass", 1.0),
        "lb" => ("mass", 0.453_592_37),
        "oz" => ("mass", 0.028_349_523_125),
        _ => return None,
    })
}

fn to_kelvin(v: f64, unit: &str) -> Option<f64> {
    Some(match unit {
        "C" => v + 273.15,
        "F" => (v - 32.0) * 5.0 / 9.0 + 273.15,
        "K" => v,
        _ => return None,
    })
}

fn from_kelvin(k: f64, unit: &str) -> Option<f64> {
    Some(match unit {
        "C" => k - 273.15,
        "F" => (k - 273.15) * 9.0 / 5.0 + 32.0,
        "K" => k,
        _ => return None,
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

impl Tools {
    fn journal_path(state_path: &Path) -> PathBuf {
        let mut name = state_path.as_os_str().to_owned();
        name.push(".journal");
        PathBuf::from(name)
    }

    fn load(state_path: &Path) -> Result<Self, String> {
        let mut state: State = match std::fs::read_to_string(state_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{}: corrupt tool state: {e}", state_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(format!("{}: {e}", state_path.display())),
        };
        let journal_path = Self::journal_path(state_path);
        let replayed = match std::fs::read(&journal_path) {
            Ok(bytes) => {
                let mut n = 0;
                // a line cut short by a crash was never acknowledged: it and anything after
                // it are dropped
                for line in bytes.split(|&b| b == b'\n') {
                    let Ok(entry) = serde_json::from_slice::<Value>(line) else {
                        break;
                    };
                    let (Some(list), Some(item), Some(next_id)) = (
                        entry["list"].as_str(),
                        entry.get("item"),
                        entry["next_id"].as_u64(),
                    ) else {
                        break;
                    };
                    state
                        .upsert(list, item.clone())
                        .map_err(|e| format!("{}: line {}: {e}", journal_path.display(), n + 1))?;
                    state.next_id = state.next_id.max(next_id);
                    n += 1;
                }
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(format!("{}: {e}", journal_path.display())),
        };
        let tools = Self {
            state: Mutex::new(state),
            state_path: state_path.to_path_buf(),
            journal: Mutex::new(Journal::default()),
        };
        if replayed > 0 {
            let state = tools.state.lock().map_err(|_| "tool state is poisoned")?;
            tools.compact(&state, &mut Journal::default())?;
        }
        Ok(tools)
    }

    /// Writes the state atomically (temporary file + rename), so a crash never leaves half a file.
    fn save(&self, state: &State) -> Result<(), String> {
        if let Some(dir) = self.state_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let tmp = self.state_path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &self.state_path).map_err(|e| e.to_string())
    }

    /// A new snapshot, then an empty journal (a crash in between replays the journal onto the
    /// new snapshot: the same state, as replaying is idempotent).
    fn compact(&self, state: &State, journal: &mut Journal) -> Result<(), String> {
        self.save(state)?;
        journal.file = None;
        journal.lines = 0;
        match std::fs::remove_file(Self::journal_path(&self.state_path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    /// Runs `f` on the state and journals the item it returns (which carries its `id`).
    fn mutate(&self, f: impl FnOnce(&mut State) -> ToolResult) -> ToolResult {
        use std::io::Write as _;
        let mut state = self
            .state
            .lock()
            .map_err(|_| "tool state is poisoned".to_string())?;
        let item = f(&mut state)?;
        let list = state
            .list_of(&item["id"])
            .ok_or("the changed item has no id in any list")?;
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| "tool journal is poisoned".to_string())?;
        if journal.lines >= COMPACT_EVERY {
            self.compact(&state, &mut journal)?;
        }
        if journal.file.is_none() {
            if let Some(dir) = self.state_path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let path = Self::journal_path(&self.state_path);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            journal.file = Some(file);
        }
        let mut line =
            serde_json::to_vec(&json!({"list": list, "item": item, "next_id": state.next_id}))
                .map_err(|e| e.to_string())?;
        line.push(b'\n');
        if let Some(file) = journal.file.as_mut() {
            file.write_all(&line).map_err(|e| e.to_string())?;
        }
        journal.lines += 1;
        Ok(item)
    }

    fn run(&self, name: &str, args: &Map<String, Value>) -> ToolResult {
        match name {
            "calculator" => {
                let (a, b) = (num(args, "a")?, num(args, "b")?);
                let r = match text(args, "op")? {
                    "add" | "+" => a + b,
                    "subtract" | "-" => a - b,
                    "multiply" | "*" => a * b,
                    "divide" | "/" if b == 0.0 => return Err("division by zero".into()),
                    "divide" | "/" => a / b,
                    "power" | "^" => a.powf(b),
                    op => {
                        return Err(format!(
                            "unknown op {op:?} (add, subtract, multiply, divide, power)"
                        ));
                    }
                };
                Ok(json!({"result": r}))
            }
            "convert_units" => {
                let (v, from, to) = (num(args, "value")?, text(args, "from")?, text(args, "to")?);
                let result = if let (Some(k), true) =
                    (to_kelvin(v, from), to_kelvin(0.0, to).is_some())
                {
                    from_kelvin(k, to).unwrap_or(f64::NAN)
                } else {
                    let (kf, f) =
                        unit_factor(from).ok_or_else(|| format!("unknown unit {from:?}"))?;
                    let (kt, t) = unit_factor(to).ok_or_else(|| format!("unknown unit {to:?}"))?;
                    if kf != kt {
                        return Err(format!("cannot convert {kf} ({from}) to {kt} ({to})"));
                    }
                    v * f / t
                };
                Ok(json!({"value": round(result, 6), "unit": to}))
            }
            "convert_currency" => {
                let (amount, from, to) = (
                    num(args, "amount")?,
                    text(args, "from")?.to_uppercase(),
                    text(args, "to")?.to_uppercase(),
                );
                let rate = |c: &str| {
                    RATES
                        .iter()
                        .find(|r| r.0 == c)
                        .map(|r| r.1)
                        .ok_or_else(|| format!("unknown currency {c:?}"))
                };
                let (rf, rt) = (rate(&from)?, rate(&to)?);
                Ok(
                    json!({"amount": round(amount / rf * rt, 2), "currency": to, "rate": round(rt / rf, 6), "rates_date": "2026-11-20"}),
                )
            }
            "date_difference" => {
                let (a, b) = (
                    parse_date(text(args, "start_date")?)?,
                    parse_date(text(args, "end_date")?)?,
                );
                Ok(json!({"days": b - a}))
            }
            "add_days" => {
                let date = parse_date(text(args, "date")?)?;
                let days = num(args, "days")?;
                if days.fract() != 0.0 || days.abs() > 1e7 {
                    return Err("days must be a whole number of reasonable size".into());
                }
                let out = date + days as i64;
                Ok(json!({"date": format_date(out), "weekday": weekday_name(out)}))
            }
            "weekday" => {
                let date = parse_date(text(args, "date")?)?;
                Ok(json!({"weekday": weekday_name(date)}))
            }
            "add_todo" => {
                let title = text(args, "title")?.to_string();
                let due = opt_text(args, "due_date")
                    .map(|d| parse_date(d).map(format_date))
                    .transpose()?;
                self.mutate(|s| {
                    s.next_id += 1;
                    let item =
                        json!({"id": s.next_id, "title": title, "due_date": due, "done": false});
                    s.todos.push(item.clone());
                    Ok(item)
                })
            }
            "list_todos" => {
                let all = args
                    .get("include_done")
                    .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
                let s = self
                    .state
                    .lock()
                    .map_err(|_| "tool state is poisoned".to_string())?;
                Ok(
                    json!({"todos": s.todos.iter().filter(|t| all || t["done"] == false).collect::<Vec<_>>()}),
                )
            }
            "complete_todo" => {
                let id = num(args, "id")? as u64;
                self.mutate(|s| {
                    let item = s
                        .todos
                        .iter_mut()
                        .find(|t| t["id"] == id)
                        .ok_or_else(|| format!("no to-do item with id {id}"))?;
                    item["done"] = json!(true);
                    Ok(item.clone())
                })
            }
            "add_calendar_event" => {
                let title = text(args, "title")?.to_string();
                let date = format_date(parse_date(text(args, "date")?)?);
                let time = opt_text(args, "time")
                    .map(|t| check_time(t).map(|_| t.to_string()))
                    .transpose()?;
                self.mutate(|s| {
                    s.next_id += 1;
                    let event =
                        json!({"id": s.next_id, "title": title, "date": date, "time": time});
                    s.events.push(event.clone());
                    Ok(event)
                })
            }
            "list_calendar_events" => {
                let date = opt_text(args, "date")
                    .map(|d| parse_date(d).map(format_date))
                    .transpose()?;
                let s = self
                    .state
                    .lock()
                    .map_err(|_| "tool state is poisoned".to_string())?;
                let events: Vec<&Value> = s
                    .events
                    .iter()
                    .filter(|e| date.as_ref().is_none_or(|d| e["date"] == *d))
                    .collect();
                Ok(json!({"events": events}))
            }
            "set_alarm" => {
                let time = text(args, "time")?.to_string();
                check_time(&time)?;
                let label = opt_text(args, "label").map(str::to_string);
                self.mutate(|s| {
                    s.next_id += 1;
                    let alarm = json!({"id": s.next_id, "time": time, "label": label});
                    s.alarms.push(alarm.clone());
                    Ok(alarm)
                })
            }
            "list_alarms" => {
                let s = self
                    .state
                    .lock()
                    .map_err(|_| "tool state is poisoned".to_string())?;
                Ok(json!({"alarms": s.alarms}))
            }
            "country_info" => {
                let q = text(args, "country")?.to_lowercase();
                let c = COUNTRIES
                    .iter()
                    .find(|c| c.0.to_lowercase() == q)
                    .ok_or_else(|| {
                        format!(
                            "no entry for {q:?}; known: {}",
                            COUNTRIES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
                        )
                    })?;
                Ok(
                    json!({"country": c.0, "capital": c.1, "population": c.2, "currency": c.3, "languages": c.4}),
                )
            }
            other => Err(format!("unknown tool {other:?}")),
        }
    }
}

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

/// How the server answers web pages, and how many requests it serves at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Origins (`scheme://host:port`) whose pages may call the tools (CORS); `"*"` for any.
    /// A request from another origin (its `Origin` header) is refused with 403 before any tool
    /// runs; requests without `Origin` (the CLI, scripts) are always served.
    pub allowed_origins: Vec<String>,
    /// Threads answering requests: a client that is slow to send its body holds one of them.
    pub workers: usize,
}

impl Default for ServeOptions {
    /// The web app as `scripts/web.sh` serves it (port 8000), 8 workers.
    fn default() -> Self {
        Self {
            allowed_origins: vec![
                "http://127.0.0.1:8000".into(),
                "http://localhost:8000".into(),
            ],
            workers: 8,
        }
    }
}

/// A running tool server.
pub struct ServerHandle {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    server: Arc<Server>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Blocks until the server stops.
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Deletes the state kept at `state_path`: the snapshot, its temporary file and the journal
/// beside it (missing files are fine).
pub fn remove_state(state_path: &Path) {
    let _ = std::fs::remove_file(state_path);
    let _ = std::fs::remove_file(state_path.with_extension("json.tmp"));
    let _ = std::fs::remove_file(Tools::journal_path(state_path));
}

/// Starts the tool server on `addr` (`127.0.0.1:0` picks a free port) with the default
/// [`ServeOptions`], keeping state in `state_path` (created when first written).
///
/// # Errors
///
/// A message when the address cannot be bound or the state file is unreadable.
pub fn serve(addr: &str, state_path: &Path) -> Result<ServerHandle, String> {
    serve_with(addr, state_path, &ServeOptions::default())
}

/// [`serve`] with explicit [`ServeOptions`].
///
/// # Errors
///
/// A message when the address cannot be bound, the state file is unreadable or `workers` is 0.
pub fn serve_with(
    addr: &str,
    state_path: &Path,
    options: &ServeOptions,
) -> Result<ServerHandle, String> {
    if options.workers == 0 {
        return Err("the tool server needs at least one worker".into());
    }
    let tools = Arc::new(Tools::load(state_path)?);
    let server = Arc::new(Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?);
    let url = match server.server_addr().to_ip() {
        Some(ip) => format!("http://{ip}"),
        None => return Err("the server is not on an IP address".into()),
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let origins = Arc::new(options.allowed_origins.clone());
    let threads = (0..options.workers)
        .map(|_| {
            let (srv, tools, base, stopping, origins) = (
                server.clone(),
                tools.clone(),
                url.clone(),
                stopping.clone(),
                origins.clone(),
            );
            std::thread::spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    // an error is one failed connection (or the unblock of `stop`), not the end
                    if let Ok(request) = srv.recv() {
                        handle(request, &tools, &base, &origins);
                    }
                }
            })
        })
        .collect();
    Ok(ServerHandle {
        url,
        server,
        stopping,
        threads,
    })
}

/// A response header; `None` when `value` is not a valid header value (then it is left out).
fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name, value).ok()
}

fn handle(mut request: tiny_http::Request, tools: &Tools, base: &str, origins: &[String]) {
    let origin = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Origin"))
        .map(|h| h.value.as_str().to_string());
    let allowed_origin = origin
        .as_deref()
        .filter(|o| origins.iter().any(|a| a == "*" || a == o));
    let mut headers = vec![header("Content-Type", "application/json")];
    if let Some(o) = allowed_origin {
        headers.extend([
            header("Access-Control-Allow-Origin", o),
            header("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            header("Access-Control-Allow-Headers", "content-type"),
            header("Vary", "Origin"),
        ]);
    }
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = request.method().clone();
    let (status, body) = if let (Some(o), None) = (&origin, allowed_origin) {
        let error = format!(
            "pages from {o} may not call this tool server; start it with --cors-origin {o} to allow them"
        );
        (403, json!({"error": error, "response": ""}))
    } else if !matches!(method, Method::Get | Method::Post | Method::Options) {
        headers.push(header("Allow", "GET, POST, OPTIONS"));
        let error = format!("method {method} is not supported (GET, POST, OPTIONS)");
        (405, json!({"error": error, "response": ""}))
    } else if method == Method::Options {
        (204, Value::Null)
    } else if path == "/tools" || path == "/tools/" {
        (200, tool_docs(base))
    } else if path == "/openapi.json" {
        (200, openapi(base))
    } else if let Some(name) = path.strip_prefix("/tools/") {
        if !TOOLS.iter().any(|t| t.name == name) {
            let error = format!("no tool named {name:?}");
            (404, json!({"error": error, "response": ""}))
        } else if mutates(name) && method != Method::Post {
            headers.push(header("Allow", "POST"));
            let error = format!("{name} changes state: call it with POST and a JSON object body");
            (405, json!({"error": error, "response": ""}))
        } else {
            let args = if method == Method::Post {
                let mut text = String::new();
                let _ = request.as_reader().take(1 << 20).read_to_string(&mut text);
                match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(o)) => Ok(o),
                    _ => Err(format!(
                        "the body must be a JSON object, got {:?}",
                        text.chars().take(100).collect::<String>()
                    )),
                }
            } else {
                Ok(parse_query(query))
            };
            match args.and_then(|a| tools.run(name, &a)) {
                Ok(v) => (200, json!({"error": "", "response": v})),
                Err(e) => (400, json!({"error": e, "response": ""})),
            }
        }
    } else {
        (
            404,
            json!({"error": format!("no route {path}; try /tools"), "response": ""}),
        )
    };
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut response = Response::from_string(text).with_status_code(status);
    for h in headers.into_iter().flatten() {
        response.add_header(h);
    }
    let _ = request.respond(response);
}

/// `a=1&b=x%20y` → `{"a": "1", "b": "x y"}` (values stay strings; tools parse numbers).
fn parse_query(query: &str) -> Map<String, Value> {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push(h * 16 + l);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut map = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(decode(k), Value::String(decode(v)));
    }
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_know_weekdays() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(weekday_name(parse_date("2026-11-23").unwrap()), "Monday");
        assert_eq!(
            format_date(parse_date("2024-02-28").unwrap() + 1),
            "2024-02-29"
        );
        assert!(
            parse_date("2023-02-29")
                .unwrap_err()
                .contains("does not exist")
        );
        assert_eq!(
            parse_query("a=1&b=x%20y+z&c=%C3%A9%zz%"),
            serde_json::from_value::<Map<String, Value>>(
                json!({"a": "1", "b": "x y z", "c": "é%zz%"})
            )
            .unwrap()
        );
    }
}
