//! The task families: each writes a query, plays the reference trajectory against the live
//! server through [`Session`], and reads the values its rationales and answer state from the
//! observations.

use rand::Rng;
use serde_json::{Value, json};

use super::values::{
    self, ALARM_LABELS, CITIES, COMPANIES, COUNTRIES, COUNTRY_ALIASES, CURRENCIES, EVENTS,
    IMPOSSIBLE, LANGUAGES, TODOS, UNITS, UNKNOWN_COUNTRIES, UNKNOWN_CURRENCIES, fill, fmt_num, iso,
};
use super::{Session, TaskKind, TaskOutcome, ToolAnswer};

type Family = fn(&mut Session) -> Result<TaskOutcome, String>;

/// Plays one task of `kind`, from a family chosen at random.
pub(crate) fn play(s: &mut Session, kind: TaskKind) -> Result<TaskOutcome, String> {
    let families: &[Family] = match kind {
        TaskKind::OneTool => &[
            currency,
            weekday,
            date_difference,
            add_days,
            calculator,
            units,
            country,
            add_todo,
            set_alarm,
            add_event,
        ],
        TaskKind::MultiTool => &[
            currency_and_weekday,
            currency_of_country,
            weeks_between,
            population_sum_or_difference,
            todos_then_list,
            event_after_days,
            distance_total,
            todo_then_complete,
            alarms_then_list,
            days_and_weekday,
        ],
        TaskKind::ErrorRecovery => &[country_alias, alarm_time_format, date_format],
        TaskKind::GiveUp => &[impossible, impossible, unknown_country, unknown_currency],
    };
    let family = families[s.rng.random_range(0..families.len())];
    let mut outcome = family(s)?;
    outcome.kind = kind;
    Ok(outcome)
}

fn ok(answer: ToolAnswer, what: &str) -> Result<Value, String> {
    answer.map_err(|e| format!("synthetic task {what}: the demo server answered an error: {e}"))
}

fn num(v: &Value, key: &str) -> Result<f64, String> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("synthetic task: no number {key:?} in {v}"))
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("synthetic task: no string {key:?} in {v}"))
}

fn outcome(query: String, expected: Vec<String>) -> TaskOutcome {
    TaskOutcome {
        query,
        kind: TaskKind::OneTool,
        expected,
    }
}

/// A currency code and the name the query uses for it.
fn currency_pair(s: &mut Session) -> ((&'static str, String), (&'static str, String)) {
    let a = s.rng.random_range(0..CURRENCIES.len());
    let mut b = s.rng.random_range(0..CURRENCIES.len() - 1);
    if b >= a {
        b += 1;
    }
    let name = |s: &mut Session, i: usize| -> String { s.any(CURRENCIES[i].1).to_string() };
    let (na, nb) = (name(s, a), name(s, b));
    ((CURRENCIES[a].0, na), (CURRENCIES[b].0, nb))
}

const CURRENCY_QUERIES: &[&str] = &[
    "What is {amt} {from} in {to}?",
    "Convert {amt} {from} to {to}.",
    "How much is {amt} {from} in {to}?",
    "I have {amt} {from}. How many {to} is that?",
    "Can you tell me what {amt} {from} is worth in {to}?",
    "Please convert {amt} {from} into {to}.",
    "How many {to} would I get for {amt} {from}?",
    "{amt} {from} to {to}, please.",
    "What's the value of {amt} {from} in {to}?",
    "Exchange {amt} {from} into {to} for me.",
    "If I change {amt} {from}, how many {to} do I get?",
    "Tell me how much {amt} {from} comes to in {to}.",
];

fn convert(s: &mut Session, amt: i64, from: &str, to: &str, lead: &str) -> Result<Value, String> {
    let thought = fill(
        s.any(&[
            "{lead}I will call convert_currency with amount {amt}, from {from} and to {to}.",
            "{lead}The convert_currency tool converts {amt} {from} into {to}.",
            "{lead}I should use convert_currency to find how much {amt} {from} is in {to}.",
            "{lead}To answer I need to convert {amt} {from} to {to}, so I call convert_currency.",
        ]),
        &[
            ("lead", lead.to_string()),
            ("amt", amt.to_string()),
            ("from", from.into()),
            ("to", to.into()),
        ],
    );
    let r = s.call(
        &thought,
        "convert_currency",
        json!({"amount": amt, "from": from, "to": to}),
    );
    ok(r, "convert_currency")
}

fn currency(s: &mut Session) -> Result<TaskOutcome, String> {
    let amt = values::amount(&mut s.rng, s.split);
    let ((fc, fname), (tc, tname)) = currency_pair(s);
    let q = s.pick(CURRENCY_QUERIES);
    let query = fill(
        q,
        &[("amt", amt.to_string()), ("from", fname), ("to", tname)],
    );
    let r = convert(s, amt, fc, tc, "")?;
    let x = fmt_num(num(&r, "amount")?, 2);
    let rate = fmt_num(num(&r, "rate")?, 6);
    let vars = [
        ("amt", amt.to_string()),
        ("from", fc.to_string()),
        ("to", tc.to_string()),
        ("x", x.clone()),
        ("rate", rate),
    ];
    let thought = fill(
        s.any(&[
            "convert_currency returned {x} {to} for {amt} {from}, which answers the question.",
            "The conversion is done: {amt} {from} is {x} {to} at a rate of {rate}. I can answer now.",
            "I have the result, {x} {to}, so I can give the final answer.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "{amt} {from} is {x} {to} (rate {rate}, ECB reference rates of 2026-11-20).",
            "{amt} {from} is about {x} {to}.",
            "You would get {x} {to} for {amt} {from}, at a rate of {rate} {to} per {from}.",
            "At the bundled exchange rate of {rate}, {amt} {from} comes to {x} {to}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x]))
}

const WEEKDAY_QUERIES: &[&str] = &[
    "What day of the week is {date}?",
    "Which weekday is {date}?",
    "On what day of the week does {date} fall?",
    "Tell me the weekday of {date}.",
    "Is {date} a weekend? What day is it?",
    "What weekday will {date} be?",
    "I need to know which day of the week {date} is.",
    "Which day of the week was {date}?",
];

fn lookup_weekday(s: &mut Session, date: &str, lead: &str) -> Result<String, String> {
    let thought = fill(
        s.any(&[
            "{lead}I will use the weekday tool with the date {date}.",
            "{lead}The weekday tool tells the day of the week of {date}.",
            "{lead}I need the day of the week for {date}, so I call weekday.",
        ]),
        &[("lead", lead.to_string()), ("date", date.to_string())],
    );
    let r = s.call(&thought, "weekday", json!({"date": date}));
    text(&ok(r, "weekday")?, "weekday")
}

fn weekday(s: &mut Session) -> Result<TaskOutcome, String> {
    let d = values::date(&mut s.rng, s.split);
    let spoken = values::spoken_date(&mut s.rng, d);
    let query = fill(s.pick(WEEKDAY_QUERIES), &[("date", spoken.clone())]);
    let day = lookup_weekday(s, &iso(d), "")?;
    let vars = [("date", iso(d)), ("spoken", spoken), ("day", day.clone())];
    let thought = fill(
        s.any(&[
            "The weekday tool says {date} is a {day}.",
            "{date} falls on a {day}; that answers the question.",
            "I have the answer: {day}.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "{spoken} is a {day}.",
            "{spoken} falls on a {day}.",
            "It is a {day}: {date}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![day]))
}

/// Two dates, the first before the second, at most ~3 years apart.
fn date_pair(s: &mut Session) -> ((i64, i64, i64), (i64, i64, i64)) {
    loop {
        let a = values::date(&mut s.rng, s.split);
        let b = values::date(&mut s.rng, s.split);
        if a < b && b.0 - a.0 <= 3 {
            return (a, b);
        }
    }
}

fn count_days(s: &mut Session, a: &str, b: &str, lead: &str) -> Result<i64, String> {
    let thought = fill(
        s.any(&[
            "{lead}I will call date_difference with start_date {a} and end_date {b}.",
            "{lead}The date_difference tool counts the days from {a} to {b}.",
            "{lead}To count the days between {a} and {b} I use date_difference.",
        ]),
        &[("lead", lead.into()), ("a", a.into()), ("b", b.into())],
    );
    let r = s.call(
        &thought,
        "date_difference",
        json!({"start_date": a, "end_date": b}),
    );
    Ok(num(&ok(r, "date_difference")?, "days")? as i64)
}

fn date_difference(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = date_pair(s);
    let (sa, sb) = (
        values::spoken_date(&mut s.rng, a),
        values::spoken_date(&mut s.rng, b),
    );
    let query = fill(
        s.pick(&[
            "How many days are there between {a} and {b}?",
            "How many days from {a} until {b}?",
            "Count the days from {a} to {b}.",
            "How long is it, in days, from {a} to {b}?",
            "What is the number of days between {a} and {b}?",
            "If today is {a}, how many days are left until {b}?",
            "How many days separate {a} and {b}?",
            "Days from {a} to {b}?",
        ]),
        &[("a", sa.clone()), ("b", sb.clone())],
    );
    let days = count_days(s, &iso(a), &iso(b), "")?;
    let vars = [("a", sa), ("b", sb), ("n", days.to_string())];
    let thought = fill(
        s.any(&[
            "date_difference returned {n} days, which answers the question.",
            "There are {n} days between the two dates. I can answer.",
            "The tool counted {n} days.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "There are {n} days from {a} to {b}.",
            "{b} is {n} days after {a}.",
            "It is {n} days from {a} until {b}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![days.to_string()]))
}

fn shift_date(s: &mut Session, date: &str, n: i64, lead: &str) -> Result<(String, String), String> {
    let thought = fill(
        s.any(&[
            "{lead}I will call add_days with date {date} and days {n}.",
            "{lead}The add_days tool gives the date {n} days from {date}.",
            "{lead}I need the date that is {n} days from {date}, so I use add_days.",
        ]),
        &[
            ("lead", lead.into()),
            ("date", date.into()),
            ("n", n.to_string()),
        ],
    );
    let r = ok(
        s.call(&thought, "add_days", json!({"date": date, "days": n})),
        "add_days",
    )?;
    Ok((text(&r, "date")?, text(&r, "weekday")?))
}

fn add_days(s: &mut Session) -> Result<TaskOutcome, String> {
    let d = values::date(&mut s.rng, s.split);
    let spoken = values::spoken_date(&mut s.rng, d);
    let n = values::small(&mut s.rng, s.split, 1, 400);
    let before = s.rng.random_bool(0.25);
    let query = if before {
        fill(
            s.pick(&[
                "What date was it {n} days before {date}?",
                "Which date is {n} days earlier than {date}?",
                "Go back {n} days from {date}: what is the date?",
                "What was the date {n} days before {date}?",
            ]),
            &[("n", n.to_string()), ("date", spoken.clone())],
        )
    } else {
        fill(
            s.pick(&[
                "What date is {n} days after {date}?",
                "Which date will it be {n} days from {date}?",
                "If I start on {date}, what is the date {n} days later?",
                "What is the date {n} days after {date}, and which weekday is it?",
                "Add {n} days to {date}. What date do I get?",
                "My project starts on {date} and lasts {n} days. On what date does it end?",
                "Which day is {n} days past {date}?",
                "What will the date be {n} days after {date}?",
            ]),
            &[("n", n.to_string()), ("date", spoken.clone())],
        )
    };
    let signed = if before { -n } else { n };
    let (date, day) = shift_date(s, &iso(d), signed, "")?;
    let vars = [
        ("n", n.to_string()),
        ("spoken", spoken),
        ("date", date.clone()),
        ("day", day),
        ("dir", if before { "before" } else { "after" }.to_string()),
    ];
    let thought = fill(
        s.any(&[
            "add_days returned {date}, a {day}.",
            "The tool says the date is {date} ({day}). I can answer.",
            "I have the date: {date}.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "{n} days {dir} {spoken} is {date}, a {day}.",
            "The date is {date} (a {day}).",
            "It is {date}, which is a {day}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![date]))
}

fn calculate(s: &mut Session, a: f64, op: &str, b: f64, lead: &str) -> Result<f64, String> {
    let (sa, sb) = (fmt_num(a, 6), fmt_num(b, 6));
    let word = match op {
        "add" => "plus",
        "subtract" => "minus",
        "multiply" => "times",
        "divide" => "divided by",
        _ => "to the power of",
    };
    let thought = fill(
        s.any(&[
            "{lead}I will use the calculator to compute {a} {word} {b}.",
            "{lead}The calculator tool can compute {a} {word} {b} with op {op}.",
            "{lead}I need {a} {word} {b}, so I call the calculator with op {op}.",
        ]),
        &[
            ("lead", lead.into()),
            ("a", sa),
            ("op", op.into()),
            ("word", word.into()),
            ("b", sb),
        ],
    );
    let args = json!({"a": json_num(a), "op": op, "b": json_num(b)});
    num(
        &ok(s.call(&thought, "calculator", args), "calculator")?,
        "result",
    )
}

/// A JSON number: whole values as integers (`7`, not `7.0`).
fn json_num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

fn calculator(s: &mut Session) -> Result<TaskOutcome, String> {
    let op = s.any(&["add", "subtract", "multiply", "divide", "power"]);
    let (a, b) = match op {
        "power" => (
            values::small(&mut s.rng, s.split, 2, 12) as f64,
            s.rng.random_range(2..=4) as f64,
        ),
        "multiply" => (
            values::small(&mut s.rng, s.split, 2, 999) as f64,
            values::small(&mut s.rng, s.split, 2, 99) as f64,
        ),
        "divide" => (
            values::amount(&mut s.rng, s.split) as f64,
            values::small(&mut s.rng, s.split, 2, 40) as f64,
        ),
        _ => (
            values::amount(&mut s.rng, s.split) as f64,
            values::amount(&mut s.rng, s.split) as f64,
        ),
    };
    let queries: &[&str] = match op {
        "add" => &[
            "What is {a} plus {b}?",
            "Add {a} and {b}.",
            "What do {a} and {b} add up to?",
            "Compute {a} + {b}.",
            "What's the sum of {a} and {b}?",
        ],
        "subtract" => &[
            "What is {a} minus {b}?",
            "Subtract {b} from {a}.",
            "What do I get if I take {b} away from {a}?",
            "Compute {a} - {b}.",
            "What's {a} less {b}?",
        ],
        "multiply" => &[
            "What is {a} times {b}?",
            "Multiply {a} by {b}.",
            "What's the product of {a} and {b}?",
            "Compute {a} * {b}.",
            "How much is {a} multiplied by {b}?",
        ],
        "divide" => &[
            "What is {a} divided by {b}?",
            "Divide {a} by {b}.",
            "How much is {a} / {b}?",
            "Compute {a} / {b}.",
            "If I split {a} into {b} equal parts, how big is each part?",
        ],
        _ => &[
            "What is {a} to the power of {b}?",
            "Raise {a} to the power {b}.",
            "Compute {a}^{b}.",
            "What is {a} raised to the {b}th power?",
            "How much is {a} to the {b}th power?",
        ],
    };
    let query = fill(
        s.pick(queries),
        &[("a", fmt_num(a, 6)), ("b", fmt_num(b, 6))],
    );
    let r = calculate(s, a, op, b, "")?;
    let x = fmt_num(r, 2);
    let vars = [("x", x.clone()), ("a", fmt_num(a, 6)), ("b", fmt_num(b, 6))];
    let thought = fill(
        s.any(&[
            "The calculator returned {x}.",
            "The result is {x}, which answers the question.",
            "I have the result ({x}).",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&["The answer is {x}.", "It is {x}.", "The result is {x}."]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x]))
}

fn unit_value(kind: &str, s: &mut Session) -> f64 {
    match kind {
        "temperature" => (s.rng.random_range(-20..=110)) as f64,
        _ => values::small(&mut s.rng, s.split, 1, 500) as f64,
    }
}

/// Digits an answer gives for a converted value: more for small values.
fn unit_digits(x: f64) -> i32 {
    if x.abs() < 10.0 { 4 } else { 2 }
}

fn units(s: &mut Session) -> Result<TaskOutcome, String> {
    let (kind, from, from_names) = s.any(UNITS);
    let same: Vec<_> = UNITS
        .iter()
        .filter(|u| u.0 == kind && u.1 != from)
        .collect();
    let (_, to, to_names) = *s.any(&same);
    let v = unit_value(kind, s);
    let (fname, tname) = (s.any(from_names).to_string(), s.any(to_names).to_string());
    let query = fill(
        s.pick(&[
            "How many {to} are in {v} {from}?",
            "Convert {v} {from} to {to}.",
            "What is {v} {from} in {to}?",
            "{v} {from} is how many {to}?",
            "Please express {v} {from} in {to}.",
            "How much is {v} {from} in {to}?",
            "I measured {v} {from}. What is that in {to}?",
            "Change {v} {from} into {to}.",
        ]),
        &[
            ("v", fmt_num(v, 6)),
            ("from", fname.clone()),
            ("to", tname.clone()),
        ],
    );
    let thought = fill(
        s.any(&[
            "I will convert {v} {from} to {to} with convert_units.",
            "The convert_units tool converts {v} from {from} to {to}.",
            "I need {v} {from} in {to}, so I call convert_units with value {v}, from {from} and to {to}.",
        ]),
        &[("v", fmt_num(v, 6)), ("from", from.into()), ("to", to.into())],
    );
    let r = ok(
        s.call(
            &thought,
            "convert_units",
            json!({"value": json_num(v), "from": from, "to": to}),
        ),
        "convert_units",
    )?;
    let x = num(&r, "value")?;
    let xs = fmt_num(x, unit_digits(x));
    let vars = [
        ("x", xs.clone()),
        ("v", fmt_num(v, 6)),
        ("from", fname),
        ("to", tname),
        ("tu", to.to_string()),
    ];
    let thought = fill(
        s.any(&[
            "convert_units returned {x} {tu}.",
            "The conversion gives {x} {tu}, which answers the question.",
            "I have the converted value: {x} {tu}.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "{v} {from} is {x} {to}.",
            "That is {x} {to}.",
            "{v} {from} equals about {x} {to}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![xs]))
}

fn country_lookup(s: &mut Session, name: &str, lead: &str) -> ToolAnswer {
    let thought = fill(
        s.any(&[
            "{lead}I will look up {c} with country_info.",
            "{lead}The country_info tool has facts about {c}.",
            "{lead}I need facts about {c}, so I call country_info.",
        ]),
        &[("lead", lead.into()), ("c", name.into())],
    );
    s.call(&thought, "country_info", json!({"country": name}))
}

const COUNTRY_ASPECTS: &[(&str, &[&str])] = &[
    (
        "capital",
        &[
            "What is the capital of {c}?",
            "Which city is the capital of {c}?",
            "Tell me the capital city of {c}.",
            "What's {c}'s capital?",
            "Name the capital of {c}.",
        ],
    ),
    (
        "population",
        &[
            "How many people live in {c}?",
            "What is the population of {c}?",
            "How big is the population of {c}?",
            "Roughly how many inhabitants does {c} have?",
            "What's the population of {c}?",
        ],
    ),
    (
        "currency",
        &[
            "What currency is used in {c}?",
            "Which currency does {c} use?",
            "What money do they use in {c}?",
            "What is the currency of {c}?",
            "If I travel to {c}, which currency do I need?",
        ],
    ),
    (
        "languages",
        &[
            "What languages are spoken in {c}?",
            "Which language do people speak in {c}?",
            "What is the official language of {c}?",
            "Tell me the languages of {c}.",
            "What do people in {c} speak?",
        ],
    ),
];

/// The answer's wording and the expected fact for one aspect of a country_info response.
fn country_fact(
    s: &mut Session,
    aspect: &str,
    r: &Value,
    c: &str,
) -> Result<(String, String), String> {
    Ok(match aspect {
        "capital" => {
            let x = text(r, "capital")?;
            (
                fill(
                    s.any(&["The capital of {c} is {x}.", "{x} is the capital of {c}."]),
                    &[("c", c.into()), ("x", x.clone())],
                ),
                x,
            )
        }
        "population" => {
            let x = fmt_num(num(r, "population")?, 0);
            (
                fill(
                    s.any(&[
                        "{c} has a population of about {x}.",
                        "About {x} people live in {c}.",
                    ]),
                    &[("c", c.into()), ("x", x.clone())],
                ),
                x,
            )
        }
        "currency" => {
            let x = text(r, "currency")?;
            (
                fill(
                    s.any(&["{c} uses the {x}.", "The currency of {c} is {x}."]),
                    &[("c", c.into()), ("x", x.clone())],
                ),
                x,
            )
        }
        _ => {
            let x = text(r, "languages")?;
            let first = x.split(", ").next().unwrap_or(&x).to_string();
            (
                fill(
                    s.any(&["In {c} people speak {x}.", "The languages of {c}: {x}."]),
                    &[("c", c.into()), ("x", x.clone())],
                ),
                first,
            )
        }
    })
}

fn country(s: &mut Session) -> Result<TaskOutcome, String> {
    let c = s.pick(COUNTRIES);
    let (aspect, queries) = s.any(COUNTRY_ASPECTS);
    let query = fill(s.pick(queries), &[("c", c.into())]);
    let r = ok(country_lookup(s, c, ""), "country_info")?;
    let (answer, fact) = country_fact(s, aspect, &r, c)?;
    let thought = fill(
        s.any(&[
            "country_info returned the {aspect} of {c}: {x}.",
            "The knowledge base gives {x} as the {aspect} of {c}. I can answer.",
            "I have the {aspect}: {x}.",
        ]),
        &[
            ("aspect", aspect.into()),
            ("c", c.into()),
            ("x", fact.clone()),
        ],
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![fact]))
}

fn todo(s: &mut Session, title: &str, due: Option<&str>, lead: &str) -> Result<Value, String> {
    let thought = fill(
        s.any(&[
            "{lead}I will add \"{t}\" to the to-do list with add_todo.",
            "{lead}The add_todo tool adds \"{t}\" to the to-do list.",
            "{lead}I should call add_todo with the title \"{t}\"{due}.",
        ]),
        &[
            ("lead", lead.into()),
            ("t", title.into()),
            (
                "due",
                due.map(|d| format!(" and due date {d}"))
                    .unwrap_or_default(),
            ),
        ],
    );
    let args = match due {
        Some(d) => json!({"title": title, "due_date": d}),
        None => json!({"title": title}),
    };
    ok(s.call(&thought, "add_todo", args), "add_todo")
}

fn add_todo(s: &mut Session) -> Result<TaskOutcome, String> {
    let t = s.pick(TODOS);
    let due = s
        .rng
        .random_bool(0.5)
        .then(|| values::date(&mut s.rng, s.split));
    let query = match due {
        Some(d) => fill(
            s.pick(&[
                "Add \"{t}\" to my to-do list, due {d}.",
                "I need to {t} by {d}. Put it on my to-do list.",
                "Remind me to {t}; it is due on {d}. Add it to my to-dos.",
                "Create a to-do item \"{t}\" with the due date {d}.",
            ]),
            &[("t", t.into()), ("d", iso(d))],
        ),
        None => fill(
            s.pick(&[
                "Add \"{t}\" to my to-do list.",
                "Put \"{t}\" on my to-do list, please.",
                "I must remember to {t}. Add it to my to-dos.",
                "New to-do item: {t}.",
            ]),
            &[("t", t.into())],
        ),
    };
    let due_iso = due.map(iso);
    let r = todo(s, t, due_iso.as_deref(), "")?;
    let id = fmt_num(num(&r, "id")?, 0);
    let vars = [
        ("t", t.to_string()),
        ("id", id),
        (
            "due",
            due_iso
                .as_ref()
                .map(|d| format!(", due {d}"))
                .unwrap_or_default(),
        ),
    ];
    let thought = fill(
        s.any(&[
            "The item was added with id {id}.",
            "add_todo confirmed \"{t}\" as item {id}. I can tell the user.",
            "Done: the to-do item has id {id}.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "I added \"{t}\" to your to-do list (item {id}{due}).",
            "\"{t}\" is now on your to-do list as item {id}{due}.",
            "Added to your to-dos: \"{t}\" (id {id}{due}).",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    let mut expected = vec![t.to_string()];
    expected.extend(due_iso);
    Ok(outcome(query, expected))
}

fn alarm(s: &mut Session, time: &str, label: Option<&str>, lead: &str) -> ToolAnswer {
    let thought = fill(
        s.any(&[
            "{lead}I will set the alarm with set_alarm at {time}{label}.",
            "{lead}The set_alarm tool sets an alarm for {time}{label}.",
            "{lead}I should call set_alarm with time {time}{label}.",
        ]),
        &[
            ("lead", lead.into()),
            ("time", time.into()),
            (
                "label",
                label
                    .map(|l| format!(" and label \"{l}\""))
                    .unwrap_or_default(),
            ),
        ],
    );
    let args = match label {
        Some(l) => json!({"time": time, "label": l}),
        None => json!({"time": time}),
    };
    s.call(&thought, "set_alarm", args)
}

fn set_alarm(s: &mut Session) -> Result<TaskOutcome, String> {
    let (hhmm, _) = values::time(&mut s.rng, s.split);
    let label = s.rng.random_bool(0.5).then(|| s.pick(ALARM_LABELS));
    let query = match label {
        Some(l) => fill(
            s.pick(&[
                "Set an alarm at {time} labelled \"{l}\".",
                "Please set a \"{l}\" alarm for {time}.",
                "I need an alarm at {time} to {l}.",
                "Create an alarm for {time} called \"{l}\".",
            ]),
            &[("time", hhmm.clone()), ("l", l.into())],
        ),
        None => fill(
            s.pick(&[
                "Set an alarm for {time}.",
                "Wake me up at {time}.",
                "Please set an alarm at {time}.",
                "I need an alarm at {time}.",
            ]),
            &[("time", hhmm.clone())],
        ),
    };
    ok(alarm(s, &hhmm, label, ""), "set_alarm")?;
    finish_alarm(s, query, &hhmm, label)
}

fn finish_alarm(
    s: &mut Session,
    query: String,
    hhmm: &str,
    label: Option<&str>,
) -> Result<TaskOutcome, String> {
    let vars = [
        ("time", hhmm.to_string()),
        (
            "label",
            label.map(|l| format!(" (\"{l}\")")).unwrap_or_default(),
        ),
    ];
    let thought = fill(
        s.any(&[
            "The alarm is set for {time}.",
            "set_alarm confirmed the alarm at {time}{label}. I can tell the user.",
            "Done: an alarm at {time}.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "Your alarm is set for {time}{label}.",
            "I set an alarm at {time}{label}.",
            "Done: the alarm{label} will ring at {time}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![hhmm.to_string()]))
}

fn calendar(
    s: &mut Session,
    title: &str,
    date: &str,
    time: Option<&str>,
    lead: &str,
) -> Result<Value, String> {
    let thought = fill(
        s.any(&[
            "{lead}I will add \"{t}\" on {d}{time} with add_calendar_event.",
            "{lead}The add_calendar_event tool puts \"{t}\" on the calendar on {d}{time}.",
            "{lead}I should call add_calendar_event with title \"{t}\" and date {d}{time}.",
        ]),
        &[
            ("lead", lead.into()),
            ("t", title.into()),
            ("d", date.into()),
            ("time", time.map(|t| format!(" at {t}")).unwrap_or_default()),
        ],
    );
    let args = match time {
        Some(t) => json!({"title": title, "date": date, "time": t}),
        None => json!({"title": title, "date": date}),
    };
    ok(
        s.call(&thought, "add_calendar_event", args),
        "add_calendar_event",
    )
}

fn add_event(s: &mut Session) -> Result<TaskOutcome, String> {
    let title = s.pick(EVENTS);
    let d = values::date(&mut s.rng, s.split);
    let time = s
        .rng
        .random_bool(0.6)
        .then(|| values::time(&mut s.rng, s.split).0);
    let spoken = values::spoken_date(&mut s.rng, d);
    let query = fill(
        s.pick(&[
            "Add \"{t}\" to my calendar on {d}{time}.",
            "Put the {t} on my calendar for {d}{time}.",
            "Schedule the {t} on {d}{time}.",
            "Create a calendar event \"{t}\" on {d}{time}.",
            "Please note the {t} in my calendar: {d}{time}.",
            "I have a {t} on {d}{time}; add it to the calendar.",
        ]),
        &[
            ("t", title.into()),
            ("d", spoken.clone()),
            (
                "time",
                time.as_ref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default(),
            ),
        ],
    );
    let r = calendar(s, title, &iso(d), time.as_deref(), "")?;
    let id = fmt_num(num(&r, "id")?, 0);
    let vars = [
        ("t", title.to_string()),
        ("d", iso(d)),
        ("id", id),
        (
            "time",
            time.as_ref()
                .map(|t| format!(" at {t}"))
                .unwrap_or_default(),
        ),
    ];
    let thought = fill(
        s.any(&[
            "The event was added with id {id}.",
            "add_calendar_event confirmed \"{t}\" on {d}{time}. I can tell the user.",
            "Done: the event is on the calendar.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "I added \"{t}\" to your calendar on {d}{time}.",
            "\"{t}\" is on your calendar for {d}{time} (event {id}).",
            "Scheduled: {t} on {d}{time}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    let mut expected = vec![iso(d)];
    expected.extend(time);
    Ok(outcome(query, expected))
}

// ---- multi-tool chains ----

fn currency_and_weekday(s: &mut Session) -> Result<TaskOutcome, String> {
    let amt = values::amount(&mut s.rng, s.split);
    let ((fc, fname), (tc, tname)) = currency_pair(s);
    let d = values::date(&mut s.rng, s.split);
    let spoken = values::spoken_date(&mut s.rng, d);
    let query = fill(
        s.pick(&[
            "What is {amt} {from} in {to}, and what day of the week is {d}?",
            "Convert {amt} {from} to {to} and tell me which weekday {d} is.",
            "Two questions: how much is {amt} {from} in {to}, and what day is {d}?",
            "I'm paying {amt} {from} on {d}. How many {to} is that, and what weekday is it?",
            "How many {to} is {amt} {from}? Also, which day of the week is {d}?",
            "Which weekday is {d}, and what is {amt} {from} worth in {to}?",
        ]),
        &[
            ("amt", amt.to_string()),
            ("from", fname),
            ("to", tname),
            ("d", spoken.clone()),
        ],
    );
    let lead = s.any(&[
        "There are two questions; first the conversion. ",
        "I will answer both parts, starting with the currency. ",
        "",
    ]);
    let r = convert(s, amt, fc, tc, lead)?;
    let x = fmt_num(num(&r, "amount")?, 2);
    let lead = fill(
        s.any(&[
            "{amt} {from} is {x} {to}. Now I need the weekday of {d}. ",
            "The conversion gave {x} {to}. The second question is about the date. ",
            "I have {x} {to}; the second part is the day of the week. ",
        ]),
        &[
            ("amt", amt.to_string()),
            ("from", fc.into()),
            ("to", tc.into()),
            ("x", x.clone()),
            ("d", iso(d)),
        ],
    );
    let day = lookup_weekday(s, &iso(d), &lead)?;
    let vars = [
        ("amt", amt.to_string()),
        ("from", fc.to_string()),
        ("to", tc.to_string()),
        ("x", x.clone()),
        ("d", spoken),
        ("day", day.clone()),
    ];
    let thought = fill(
        s.any(&[
            "I have both answers: {x} {to} and {day}.",
            "Both parts are answered: {amt} {from} is {x} {to}, and {d} is a {day}.",
            "The weekday is {day} and the amount {x} {to}, so I can conclude.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "{amt} {from} is {x} {to}, and {d} is a {day}.",
            "{amt} {from} comes to {x} {to}. {d} falls on a {day}.",
            "It is {x} {to} for {amt} {from}; {d} is a {day}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x, day]))
}

fn currency_of_country(s: &mut Session) -> Result<TaskOutcome, String> {
    let amt = values::amount(&mut s.rng, s.split);
    let c = s.pick(COUNTRIES);
    let i = s.rng.random_range(0..CURRENCIES.len());
    let (fc, fname) = (CURRENCIES[i].0, s.any(CURRENCIES[i].1).to_string());
    let query = fill(
        s.pick(&[
            "How much is {amt} {from} in the currency of {c}?",
            "I'm travelling to {c} with {amt} {from}. How much is that in the local currency?",
            "Convert {amt} {from} into {c}'s currency.",
            "What is {amt} {from} worth in the money used in {c}?",
            "I will spend {amt} {from} in {c}. How much local currency is that?",
        ]),
        &[("amt", amt.to_string()), ("from", fname), ("c", c.into())],
    );
    let lead = s.any(&[
        "First I need to know which currency {c} uses. ",
        "The local currency of {c} is not given, so I look it up first. ",
        "",
    ]);
    let lead = fill(lead, &[("c", c.into())]);
    let r = ok(country_lookup(s, c, &lead), "country_info")?;
    let code = text(&r, "currency")?;
    let vars = [
        ("c", c.to_string()),
        ("code", code.clone()),
        ("amt", amt.to_string()),
        ("from", fc.to_string()),
    ];
    if code == fc {
        let thought = fill(
            "{c} uses {code}, the currency the amount is already in, so no conversion is needed.",
            &vars,
        );
        let answer = fill(
            "{c} uses {code}, so {amt} {from} is simply {amt} {code}; no conversion is needed.",
            &vars,
        );
        s.conclude(&thought, &answer);
        return Ok(outcome(query, vec![amt.to_string(), code]));
    }
    let lead = fill(
        s.any(&[
            "{c} uses {code}. Now I convert {amt} {from} to {code}: ",
            "The currency of {c} is {code}. ",
            "country_info says {c} uses {code}. ",
        ]),
        &vars,
    );
    let r = convert(s, amt, fc, &code, &lead)?;
    let x = fmt_num(num(&r, "amount")?, 2);
    let vars = [
        ("c", c.to_string()),
        ("code", code.clone()),
        ("amt", amt.to_string()),
        ("from", fc.to_string()),
        ("x", x.clone()),
    ];
    let thought = fill(
        s.any(&[
            "{amt} {from} is {x} {code}, the currency of {c}.",
            "I have the local amount: {x} {code}.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "{c} uses {code}; {amt} {from} is {x} {code}.",
            "In {c} you pay in {code}: {amt} {from} comes to {x} {code}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x, code]))
}

fn weeks_between(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = date_pair(s);
    let query = fill(
        s.pick(&[
            "How many weeks are there between {a} and {b}?",
            "How many weeks is it from {a} to {b}?",
            "Express the time from {a} to {b} in weeks.",
            "From {a} until {b}: how many weeks is that?",
        ]),
        &[("a", iso(a)), ("b", iso(b))],
    );
    let lead = s.any(&[
        "First I need the number of days. ",
        "",
        "I start with the days between the dates. ",
    ]);
    let days = count_days(s, &iso(a), &iso(b), lead)?;
    let lead = fill(
        s.any(&[
            "There are {n} days; dividing by 7 gives the weeks. ",
            "date_difference gave {n} days. Now I divide by 7. ",
        ]),
        &[("n", days.to_string())],
    );
    let w = calculate(s, days as f64, "divide", 7.0, &lead)?;
    let x = fmt_num(w, 2);
    let vars = [
        ("n", days.to_string()),
        ("x", x.clone()),
        ("a", iso(a)),
        ("b", iso(b)),
    ];
    let thought = fill(
        s.any(&["{n} days are {x} weeks.", "The calculator gives {x} weeks."]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "From {a} to {b} there are {n} days, which is about {x} weeks.",
            "It is {x} weeks ({n} days).",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x]))
}

fn two_countries(s: &mut Session) -> (&'static str, &'static str) {
    let a = s.pick(COUNTRIES);
    loop {
        let b = s.pick(COUNTRIES);
        if b != a {
            return (a, b);
        }
    }
}

fn population_sum_or_difference(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = two_countries(s);
    let sum = s.rng.random_bool(0.5);
    let query = if sum {
        fill(
            s.pick(&[
                "What is the combined population of {a} and {b}?",
                "How many people live in {a} and {b} together?",
                "Add up the populations of {a} and {b}.",
                "What is the total population of {a} plus {b}?",
            ]),
            &[("a", a.into()), ("b", b.into())],
        )
    } else {
        fill(
            s.pick(&[
                "What is the difference in population between {a} and {b}?",
                "How many more people live in one of {a} and {b} than in the other?",
                "By how much do the populations of {a} and {b} differ?",
                "Compare the populations of {a} and {b}: what is the gap?",
            ]),
            &[("a", a.into()), ("b", b.into())],
        )
    };
    let lead = s.any(&[
        "I need both populations, starting with the first country. ",
        "",
    ]);
    let ra = ok(country_lookup(s, a, lead), "country_info")?;
    let pa = num(&ra, "population")?;
    let lead = fill(
        s.any(&[
            "{a} has {p} people. Now I need {b}. ",
            "The population of {a} is {p}. ",
        ]),
        &[("a", a.into()), ("p", fmt_num(pa, 0)), ("b", b.into())],
    );
    let rb = ok(country_lookup(s, b, &lead), "country_info")?;
    let pb = num(&rb, "population")?;
    let (x, y, op) = if sum {
        (pa, pb, "add")
    } else if pa >= pb {
        (pa, pb, "subtract")
    } else {
        (pb, pa, "subtract")
    };
    let lead = fill(
        s.any(&[
            "{a} has {pa} and {b} has {pb} people. ",
            "I have both populations ({pa} and {pb}). ",
        ]),
        &[
            ("a", a.into()),
            ("b", b.into()),
            ("pa", fmt_num(pa, 0)),
            ("pb", fmt_num(pb, 0)),
        ],
    );
    let r = calculate(s, x, op, y, &lead)?;
    let rs = fmt_num(r, 0);
    let vars = [
        ("a", a.to_string()),
        ("b", b.to_string()),
        ("pa", fmt_num(pa, 0)),
        ("pb", fmt_num(pb, 0)),
        ("r", rs.clone()),
    ];
    let (thought, answer) = if sum {
        (
            fill("Together they have {r} people.", &vars),
            fill(
                s.any(&[
                    "{a} ({pa}) and {b} ({pb}) have a combined population of {r}.",
                    "Together, {a} and {b} have about {r} inhabitants.",
                ]),
                &vars,
            ),
        )
    } else {
        (
            fill("The difference is {r} people.", &vars),
            fill(
                s.any(&[
                    "{a} has {pa} people and {b} has {pb}: a difference of {r}.",
                    "The populations of {a} and {b} differ by {r}.",
                ]),
                &vars,
            ),
        )
    };
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![rs]))
}

fn two_todos(s: &mut Session) -> (&'static str, &'static str) {
    let a = s.pick(TODOS);
    loop {
        let b = s.pick(TODOS);
        if b != a {
            return (a, b);
        }
    }
}

fn list_tool(s: &mut Session, tool: &str, lead: &str) -> Result<Value, String> {
    let thought = fill(
        s.any(&[
            "{lead}Now I call {tool} to show the list.",
            "{lead}I will list them with {tool}.",
        ]),
        &[("lead", lead.into()), ("tool", tool.into())],
    );
    ok(s.call(&thought, tool, json!({})), tool)
}

fn todos_then_list(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = two_todos(s);
    let query = fill(
        s.pick(&[
            "Add \"{a}\" and \"{b}\" to my to-do list, then show me the list.",
            "Put \"{a}\" and \"{b}\" on my to-dos and tell me what is on the list.",
            "I need to {a} and {b}. Add both to my to-do list and list my to-dos.",
            "New to-dos: \"{a}\", \"{b}\". What does my list look like now?",
        ]),
        &[("a", a.into()), ("b", b.into())],
    );
    let lead = s.any(&["There are two items to add; first ", ""]);
    let ra = todo(s, a, None, lead)?;
    let lead = fill(
        "\"{a}\" is item {id}. ",
        &[("a", a.into()), ("id", fmt_num(num(&ra, "id")?, 0))],
    );
    todo(s, b, None, &lead)?;
    let r = list_tool(s, "list_todos", "Both items are added. ")?;
    let items: Vec<String> = r
        .get("todos")
        .and_then(Value::as_array)
        .ok_or("synthetic task: list_todos gave no list")?
        .iter()
        .map(|t| format!("{} (item {})", t["title"].as_str().unwrap_or(""), t["id"]))
        .collect();
    let vars = [("n", items.len().to_string()), ("items", items.join(", "))];
    let (thought, answer) = (
        fill("The list has {n} open items: {items}.", &vars),
        fill(
            s.any(&[
                "Both items are added. Your to-do list now has {n} items: {items}.",
                "Done. Your to-dos: {items}.",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![a.to_string(), b.to_string()]))
}

fn event_after_days(s: &mut Session) -> Result<TaskOutcome, String> {
    let title = s.pick(EVENTS);
    let d = values::date(&mut s.rng, s.split);
    let n = values::small(&mut s.rng, s.split, 2, 90);
    let query = fill(
        s.pick(&[
            "Schedule the {t} {n} days after {d}.",
            "Put the {t} on my calendar {n} days after {d}.",
            "The {t} is {n} days after {d}. Add it to my calendar.",
            "Add \"{t}\" to the calendar, {n} days from {d}.",
        ]),
        &[("t", title.into()), ("n", n.to_string()), ("d", iso(d))],
    );
    let lead = s.any(&["First I need the date. ", ""]);
    let (date, day) = shift_date(s, &iso(d), n, lead)?;
    let lead = fill(
        s.any(&[
            "The date is {date} ({day}). ",
            "{n} days after the start is {date}. ",
        ]),
        &[
            ("date", date.clone()),
            ("day", day.clone()),
            ("n", n.to_string()),
        ],
    );
    calendar(s, title, &date, None, &lead)?;
    let vars = [
        ("t", title.to_string()),
        ("date", date.clone()),
        ("day", day),
    ];
    let (thought, answer) = (
        fill("\"{t}\" is on the calendar on {date}.", &vars),
        fill(
            s.any(&[
                "I scheduled \"{t}\" on {date}, a {day}.",
                "\"{t}\" is now on your calendar for {date} ({day}).",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![date]))
}

fn distance_total(s: &mut Session) -> Result<TaskOutcome, String> {
    let pairs = [
        ("km", "mi", "kilometers", "miles"),
        ("mi", "km", "miles", "kilometers"),
    ];
    let (from, to, fname, tname) = s.any(&pairs);
    let v = values::small(&mut s.rng, s.split, 2, 30) as f64;
    let n = values::small(&mut s.rng, s.split, 2, 60) as f64;
    let query = fill(
        s.pick(&[
            "I run {v} {from} every day. How many {to} is that over {n} days?",
            "If I walk {v} {from} a day for {n} days, how many {to} do I cover?",
            "My commute is {v} {from} each way-day, {n} days a month. How many {to} per month?",
            "A trip of {v} {from} per day for {n} days: how far is that in {to}?",
        ]),
        &[
            ("v", fmt_num(v, 6)),
            ("from", fname.into()),
            ("to", tname.into()),
            ("n", fmt_num(n, 6)),
        ],
    );
    let lead = s.any(&["First the total distance. ", ""]);
    let total = calculate(s, v, "multiply", n, lead)?;
    let lead = fill(
        s.any(&[
            "The total is {t} {from}. Now I convert it. ",
            "{t} {from} in all. ",
        ]),
        &[("t", fmt_num(total, 6)), ("from", from.into())],
    );
    let thought = fill(
        s.any(&[
            "{lead}I will convert {t} {from} to {to} with convert_units.",
            "{lead}convert_units turns {t} {from} into {to}.",
        ]),
        &[
            ("lead", lead),
            ("t", fmt_num(total, 6)),
            ("from", from.into()),
            ("to", to.into()),
        ],
    );
    let r = ok(
        s.call(
            &thought,
            "convert_units",
            json!({"value": json_num(total), "from": from, "to": to}),
        ),
        "convert_units",
    )?;
    let x = fmt_num(num(&r, "value")?, 2);
    let vars = [
        ("x", x.clone()),
        ("t", fmt_num(total, 6)),
        ("from", fname.to_string()),
        ("to", tname.to_string()),
    ];
    let (thought, answer) = (
        fill("{t} {from} is {x} {to}.", &vars),
        fill(
            s.any(&[
                "That is {t} {from} in total, or about {x} {to}.",
                "You cover about {x} {to} ({t} {from}).",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x]))
}

fn todo_then_complete(s: &mut Session) -> Result<TaskOutcome, String> {
    let t = s.pick(TODOS);
    let query = fill(
        s.pick(&[
            "Add \"{t}\" to my to-do list and mark it as done.",
            "I already did this: {t}. Add it to my to-dos and check it off.",
            "Create the to-do \"{t}\" and then complete it.",
            "Log \"{t}\" as a to-do item that is already done.",
        ]),
        &[("t", t.into())],
    );
    let lead = s.any(&["I first add the item, then complete it by its id. ", ""]);
    let r = todo(s, t, None, lead)?;
    let id = num(&r, "id")? as i64;
    let thought = fill(
        s.any(&[
            "\"{t}\" was added as item {id}. I will mark it done with complete_todo.",
            "The new item has id {id}; complete_todo with id {id} marks it as done.",
        ]),
        &[("t", t.into()), ("id", id.to_string())],
    );
    ok(
        s.call(&thought, "complete_todo", json!({"id": id})),
        "complete_todo",
    )?;
    let vars = [("t", t.to_string()), ("id", id.to_string())];
    let (thought, answer) = (
        fill("Item {id} is marked as done.", &vars),
        fill(
            s.any(&[
                "I added \"{t}\" (item {id}) and marked it as done.",
                "\"{t}\" is on your list as item {id} and checked off.",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![t.to_string()]))
}

fn alarms_then_list(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, _) = values::time(&mut s.rng, s.split);
    let b = loop {
        let (b, _) = values::time(&mut s.rng, s.split);
        if b != a {
            break b;
        }
    };
    let query = fill(
        s.pick(&[
            "Set alarms for {a} and {b}, then tell me which alarms I have.",
            "I need two alarms, {a} and {b}. Set them and list my alarms.",
            "Add alarms at {a} and {b} and show me all my alarms.",
            "Please set an alarm at {a} and another at {b}; which alarms are set now?",
        ]),
        &[("a", a.clone()), ("b", b.clone())],
    );
    let lead = s.any(&["Two alarms to set; first ", ""]);
    ok(alarm(s, &a, None, lead), "set_alarm")?;
    ok(
        alarm(s, &b, None, &format!("The {a} alarm is set. ")),
        "set_alarm",
    )?;
    let r = list_tool(s, "list_alarms", "Both alarms are set. ")?;
    let times: Vec<String> = r
        .get("alarms")
        .and_then(Value::as_array)
        .ok_or("synthetic task: list_alarms gave no list")?
        .iter()
        .map(|t| t["time"].as_str().unwrap_or("").to_string())
        .collect();
    let vars = [
        ("n", times.len().to_string()),
        ("times", times.join(" and ")),
    ];
    let (thought, answer) = (
        fill("There are {n} alarms: {times}.", &vars),
        fill(
            s.any(&[
                "Your alarms are set for {times}.",
                "You have {n} alarms: {times}.",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![a, b]))
}

fn days_and_weekday(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = date_pair(s);
    let query = fill(
        s.pick(&[
            "How many days are there from {a} to {b}, and what weekday is {b}?",
            "Count the days between {a} and {b}, and tell me the day of the week of {b}.",
            "My trip is from {a} to {b}. How many days is that, and on which weekday do I return?",
            "What weekday is {b}, and how many days after {a} is it?",
        ]),
        &[("a", iso(a)), ("b", iso(b))],
    );
    let lead = s.any(&["Two parts; first the number of days. ", ""]);
    let n = count_days(s, &iso(a), &iso(b), lead)?;
    let lead = fill(
        "There are {n} days. Now I need the weekday. ",
        &[("n", n.to_string())],
    );
    let day = lookup_weekday(s, &iso(b), &lead)?;
    let vars = [
        ("n", n.to_string()),
        ("day", day.clone()),
        ("a", iso(a)),
        ("b", iso(b)),
    ];
    let (thought, answer) = (
        fill("I have both: {n} days, and {b} is a {day}.", &vars),
        fill(
            s.any(&[
                "There are {n} days from {a} to {b}, and {b} is a {day}.",
                "{b} is a {day}, {n} days after {a}.",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![n.to_string(), day]))
}

// ---- error recovery ----

fn country_alias(s: &mut Session) -> Result<TaskOutcome, String> {
    let (alias, canonical) = s.pick(COUNTRY_ALIASES);
    let (aspect, queries) = s.any(COUNTRY_ASPECTS);
    let query = fill(s.pick(queries), &[("c", alias.into())]);
    let written = alias.strip_prefix("the ").unwrap_or(alias);
    let err = match country_lookup(s, written, "") {
        Err(e) => e,
        Ok(v) => {
            return Err(format!(
                "synthetic task: {written:?} unexpectedly known: {v}"
            ));
        }
    };
    let _ = err;
    let thought = fill(
        s.any(&[
            "The knowledge base has no entry for \"{w}\", but its list of known countries includes {c}, which is the same country. I will ask again with that name.",
            "country_info does not know \"{w}\"; the error lists {c}, the official name, so I call it again with {c}.",
            "\"{w}\" is not a name the tool knows. {w} means {c}, which is in its list, so I retry with {c}.",
        ]),
        &[("w", written.into()), ("c", canonical.into())],
    );
    let r = ok(
        s.call(&thought, "country_info", json!({"country": canonical})),
        "country_info",
    )?;
    let (answer, fact) = country_fact(s, aspect, &r, canonical)?;
    let (thought, answer) = (
        fill(
            s.any(&[
                "The second call worked: the {aspect} of {c} is {x}.",
                "Now I have the {aspect}: {x}.",
            ]),
            &[
                ("aspect", aspect.into()),
                ("c", canonical.into()),
                ("x", fact.clone()),
            ],
        ),
        answer,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![fact]))
}

fn alarm_time_format(s: &mut Session) -> Result<TaskOutcome, String> {
    let (hhmm, spoken) = values::time(&mut s.rng, s.split);
    let label = s.rng.random_bool(0.4).then(|| s.pick(ALARM_LABELS));
    let query = fill(
        s.pick(&[
            "Set an alarm for {t}.",
            "Wake me up at {t}.",
            "Please set an alarm at {t}{l}.",
            "I need an alarm at {t}{l}.",
        ]),
        &[
            ("t", spoken.clone()),
            (
                "l",
                label
                    .map(|l| format!(" labelled \"{l}\""))
                    .unwrap_or_default(),
            ),
        ],
    );
    if alarm(s, &spoken, label, "").is_ok() {
        return Err(format!("synthetic task: set_alarm accepted {spoken:?}"));
    }
    let thought = fill(
        s.any(&[
            "set_alarm rejected \"{sp}\": the time must be HH:MM. {sp} is {t}, so I set the alarm again with {t}.",
            "The tool needs the time as HH:MM, so \"{sp}\" has to be written {t}. I will call set_alarm again.",
            "The error says the time is not HH:MM. In 24-hour form {sp} is {t}; I retry with that.",
        ]),
        &[("sp", spoken.clone()), ("t", hhmm.clone())],
    );
    let args = match label {
        Some(l) => json!({"time": hhmm, "label": l}),
        None => json!({"time": hhmm}),
    };
    ok(s.call(&thought, "set_alarm", args), "set_alarm")?;
    finish_alarm(s, query, &hhmm, label)
}

fn date_format(s: &mut Session) -> Result<TaskOutcome, String> {
    let d = values::date(&mut s.rng, s.split);
    let written = values::slashed_date(&mut s.rng, d);
    let query = fill(
        s.pick(&[
            "What day of the week is {d}?",
            "Which weekday is {d}?",
            "On what day of the week does {d} fall?",
            "Tell me the weekday of {d}.",
        ]),
        &[("d", written.clone())],
    );
    if lookup_weekday(s, &written, "").is_ok() {
        return Err(format!("synthetic task: weekday accepted {written:?}"));
    }
    let thought = fill(
        s.any(&[
            "The weekday tool rejected \"{w}\" because dates must be YYYY-MM-DD. Day first, {w} is {iso}, so I call weekday again with {iso}.",
            "The date has to be written YYYY-MM-DD: \"{w}\" (day, month, year) becomes {iso}. I retry.",
            "The error says \"{w}\" is not YYYY-MM-DD. I rewrite it as {iso} and call weekday again.",
        ]),
        &[("w", written.clone()), ("iso", iso(d))],
    );
    let r = ok(
        s.call(&thought, "weekday", json!({"date": iso(d)})),
        "weekday",
    )?;
    let day = text(&r, "weekday")?;
    let vars = [("w", written), ("iso", iso(d)), ("day", day.clone())];
    let (thought, answer) = (
        fill(
            "With the date written {iso}, the tool says it is a {day}.",
            &vars,
        ),
        fill(
            s.any(&["{w} ({iso}) is a {day}.", "{iso} falls on a {day}."]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![day]))
}

// ---- give up ----

fn impossible(s: &mut Session) -> Result<TaskOutcome, String> {
    let i = {
        let owned: Vec<usize> = (0..IMPOSSIBLE.len()).filter(|i| s.split.owns(*i)).collect();
        s.any(&owned)
    };
    let (template, reason) = IMPOSSIBLE[i];
    let city = s.any(CITIES);
    let city2 = s.any(
        &CITIES
            .iter()
            .filter(|c| **c != city)
            .copied()
            .collect::<Vec<_>>(),
    );
    let query = fill(
        template,
        &[
            ("city", city.into()),
            ("city2", city2.into()),
            ("company", s.any(COMPANIES).to_string()),
            ("language", s.any(LANGUAGES).to_string()),
        ],
    );
    let thought = fill(
        s.any(&[
            "The available tools do arithmetic, conversions, dates, to-dos, calendar events, alarms and country facts, but {reason}, so I cannot do this.",
            "I cannot help with this request: {reason}.",
            "Looking at the tools, {reason}. There is nothing I can call, so I give up.",
            "This request needs something none of the tools offers ({reason}); I have to give up.",
        ]),
        &[("reason", reason.into())],
    );
    s.give_up(&thought);
    Ok(outcome(query, Vec::new()))
}

fn unknown_country(s: &mut Session) -> Result<TaskOutcome, String> {
    let c = s.pick(UNKNOWN_COUNTRIES);
    let (_, queries) = s.any(COUNTRY_ASPECTS);
    let query = fill(s.pick(queries), &[("c", c.into())]);
    if country_lookup(s, c, "").is_ok() {
        return Err(format!("synthetic task: {c} unexpectedly known"));
    }
    let thought = fill(
        s.any(&[
            "The knowledge base has no entry for {c}, and none of its known countries is {c} under another name. No other tool has country facts, so I cannot answer.",
            "country_info does not cover {c} and no other tool can answer this, so I give up.",
            "{c} is not in the country list the tool knows, so the question cannot be answered with these tools.",
        ]),
        &[("c", c.into())],
    );
    s.give_up(&thought);
    Ok(outcome(query, Vec::new()))
}

fn unknown_currency(s: &mut Session) -> Result<TaskOutcome, String> {
    let (code, name) = s.pick(UNKNOWN_CURRENCIES);
    let amt = values::amount(&mut s.rng, s.split);
    let i = s.rng.random_range(0..CURRENCIES.len());
    let (known, kname) = (CURRENCIES[i].0, s.any(CURRENCIES[i].1).to_string());
    let to_unknown = s.rng.random_bool(0.5);
    let (from, to, fname, tname) = if to_unknown {
        (known, code, kname, name.to_string())
    } else {
        (code, known, name.to_string(), kname)
    };
    let query = fill(
        s.pick(CURRENCY_QUERIES),
        &[("amt", amt.to_string()), ("from", fname), ("to", tname)],
    );
    let thought = fill(
        s.any(&[
            "I will call convert_currency with amount {amt}, from {from} and to {to}.",
            "I should use convert_currency to find how much {amt} {from} is in {to}.",
        ]),
        &[
            ("amt", amt.to_string()),
            ("from", from.into()),
            ("to", to.into()),
        ],
    );
    if s.call(
        &thought,
        "convert_currency",
        json!({"amount": amt, "from": from, "to": to}),
    )
    .is_ok()
    {
        return Err(format!(
            "synthetic task: currency {code} unexpectedly known"
        ));
    }
    let thought = fill(
        s.any(&[
            "convert_currency does not know {code}: its rate table has only EUR, USD, GBP, JPY, CHF, CNY, INR, CAD and AUD. No other tool converts currencies, so I cannot answer.",
            "The tool has no rate for {code}, so this conversion cannot be done; I give up.",
        ]),
        &[("code", code.into())],
    );
    s.give_up(&thought);
    Ok(outcome(query, Vec::new()))
}
