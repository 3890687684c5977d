//! The tools themselves: argument reading, unit conversion, and [`Tools::run`] with its
//! persisted state.

use super::*;

pub(super) fn num(args: &Map<String, Value>, key: &str) -> Result<f64, String> {
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

pub(super) fn text<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    args.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::trim)
        .ok_or_else(|| format!("missing string argument {key}"))
}

pub(super) fn opt_text<'a>(args: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(super) fn unit_factor(unit: &str) -> Option<(&'static str, f64)> {
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

pub(super) fn to_kelvin(v: f64, unit: &str) -> Option<f64> {
    Some(match unit {
        "C" => v + 273.15,
        "F" => (v - 32.0) * 5.0 / 9.0 + 273.15,
        "K" => v,
        _ => return None,
    })
}

pub(super) fn from_kelvin(k: f64, unit: &str) -> Option<f64> {
    Some(match unit {
        "C" => k - 273.15,
        "F" => (k - 273.15) * 9.0 / 5.0 + 32.0,
        "K" => k,
        _ => return None,
    })
}

pub(super) fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

impl Tools {
    pub(super) fn journal_path(state_path: &Path) -> PathBuf {
        let mut name = state_path.as_os_str().to_owned();
        name.push(".journal");
        PathBuf::from(name)
    }

    pub(super) fn load(state_path: &Path) -> Result<Self, String> {
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

    /// Empties the state, as a server started on a missing state file has it: no to-dos,
    /// events or alarms, ids counted from the start again, snapshot and journal deleted.
    pub(super) fn reset(&self) -> Result<(), String> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| "tool state is poisoned".to_string())?;
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| "tool journal is poisoned".to_string())?;
        *state = State::default();
        journal.file = None;
        journal.lines = 0;
        for path in [
            self.state_path.clone(),
            Self::journal_path(&self.state_path),
        ] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("{}: {e}", path.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes the state atomically (temporary file + rename), so a crash never leaves half a file.
    fn save(&self, state: &State) -> Result<(), String> {
        if let Some(dir) = self.state_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        umi_util::write_atomically(&self.state_path, bytes).map_err(|e| e.to_string())
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

    pub(super) fn run(&self, name: &str, args: &Map<String, Value>) -> ToolResult {
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
