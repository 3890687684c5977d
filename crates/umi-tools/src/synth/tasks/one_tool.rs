//! One-tool task families on the computing tools: currency, dates, calculator, units, countries.

use super::*;

/// A currency code and the name the query uses for it.
pub(super) fn currency_pair(s: &mut Session) -> ((&'static str, String), (&'static str, String)) {
    let a = s.rng.random_range(0..CURRENCIES.len());
    let mut b = s.rng.random_range(0..CURRENCIES.len() - 1);
    if b >= a {
        b += 1;
    }
    let name = |s: &mut Session, i: usize| -> String { s.any(CURRENCIES[i].1).to_string() };
    let (na, nb) = (name(s, a), name(s, b));
    ((CURRENCIES[a].0, na), (CURRENCIES[b].0, nb))
}

pub(super) const CURRENCY_QUERIES: &[&str] = &[
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

pub(super) fn convert(
    s: &mut Session,
    amt: i64,
    from: &str,
    to: &str,
    lead: &str,
) -> Result<Value, String> {
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

pub(super) fn currency(s: &mut Session) -> Result<TaskOutcome, String> {
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

pub(super) const WEEKDAY_QUERIES: &[&str] = &[
    "What day of the week is {date}?",
    "Which weekday is {date}?",
    "On what day of the week does {date} fall?",
    "Tell me the weekday of {date}.",
    "Is {date} a weekend? What day is it?",
    "What weekday will {date} be?",
    "I need to know which day of the week {date} is.",
    "Which day of the week was {date}?",
];

pub(super) fn lookup_weekday(s: &mut Session, date: &str, lead: &str) -> Result<String, String> {
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

pub(super) fn weekday(s: &mut Session) -> Result<TaskOutcome, String> {
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
pub(super) fn date_pair(s: &mut Session) -> ((i64, i64, i64), (i64, i64, i64)) {
    loop {
        let a = values::date(&mut s.rng, s.split);
        let b = values::date(&mut s.rng, s.split);
        if a < b && b.0 - a.0 <= 3 {
            return (a, b);
        }
    }
}

pub(super) fn count_days(s: &mut Session, a: &str, b: &str, lead: &str) -> Result<i64, String> {
    let vars = [("lead", lead.into()), ("a", a.into()), ("b", b.into())];
    let drawn = fill(
        s.any(&[
            "{lead}I will call date_difference with start_date {a} and end_date {b}.",
            "{lead}The date_difference tool counts the days from {a} to {b}.",
            "{lead}To count the days between {a} and {b} I use date_difference.",
        ]),
        &vars,
    );
    let thought = s.worked(
        drawn,
        &[
            "{lead}This asks for a number of days, not a date, so I use date_difference (add_days would give a date) with start_date {a} and end_date {b}.",
            "{lead}Counting the days between two dates is date_difference, not add_days: start_date {a}, end_date {b}.",
            "{lead}A day count from {a} to {b}: date_difference with start_date {a} and end_date {b} (the earlier date first).",
        ],
        &vars,
    );
    let r = s.call(
        &thought,
        "date_difference",
        json!({"start_date": a, "end_date": b}),
    );
    Ok(num(&ok(r, "date_difference")?, "days")? as i64)
}

pub(super) fn date_difference(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = date_pair(s);
    let (sa, sb) = (
        values::spoken_date(&mut s.rng, a),
        values::spoken_date(&mut s.rng, b),
    );
    let query = fill(
        s.pick_phrasing_more(
            &[
                "How many days are there between {a} and {b}?",
                "How many days from {a} until {b}?",
                "Count the days from {a} to {b}.",
                "How long is it, in days, from {a} to {b}?",
                "What is the number of days between {a} and {b}?",
                "If today is {a}, how many days are left until {b}?",
                "How many days separate {a} and {b}?",
                "Days from {a} to {b}?",
            ],
            &[
                "Work out how many days lie between {a} and {b}.",
                "What's the day count from {a} to {b}?",
                "I started on {a} and finished on {b}. How many days was that?",
                "Tell me the number of days between {a} and {b}.",
                "How many days does it take to get from {a} to {b}?",
            ],
            &[
                "Between {a} and {b}: how many days?",
                "{a} until {b} is how many days?",
                "How many days lie from {a} up to {b}?",
                "Number of days, {a} to {b}?",
            ],
        ),
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

pub(super) fn shift_date(
    s: &mut Session,
    date: &str,
    n: i64,
    lead: &str,
) -> Result<(String, String), String> {
    let vars = [
        ("lead", lead.into()),
        ("date", date.into()),
        ("n", n.to_string()),
        ("m", n.abs().to_string()),
    ];
    let drawn = fill(
        s.any(&[
            "{lead}I will call add_days with date {date} and days {n}.",
            "{lead}The add_days tool gives the date {n} days from {date}.",
            "{lead}I need the date that is {n} days from {date}, so I use add_days.",
        ]),
        &vars,
    );
    let worked: &[&str] = if n < 0 {
        &[
            "{lead}{m} days before {date} means going back, so add_days gets a negative count: date {date}, days {n}.",
            "{lead}Before means a negative count: add_days with date {date} and days {n} ({m} days back).",
            "{lead}The query wants a date, not a day count, and it lies {m} days earlier: add_days with date {date} and days {n}.",
        ]
    } else {
        &[
            "{lead}{n} days after {date} means going forward, so add_days gets a positive count: date {date}, days {n}.",
            "{lead}The query wants a date, not a day count, so I use add_days (not date_difference) with date {date} and days {n}.",
            "{lead}Forward in time means a positive count: add_days with date {date} and days {n}.",
        ]
    };
    let thought = s.worked(drawn, worked, &vars);
    let r = ok(
        s.call(&thought, "add_days", json!({"date": date, "days": n})),
        "add_days",
    )?;
    Ok((text(&r, "date")?, text(&r, "weekday")?))
}

pub(super) fn add_days(s: &mut Session) -> Result<TaskOutcome, String> {
    let d = values::date(&mut s.rng, s.split);
    let spoken = values::spoken_date(&mut s.rng, d);
    let n = values::small(&mut s.rng, s.split, 1, 400);
    let before = s.rng.random_bool(if s.varied() { 0.4 } else { 0.25 });
    let query = if before {
        fill(
            s.pick_phrasing_more(
                &[
                    "What date was it {n} days before {date}?",
                    "Which date is {n} days earlier than {date}?",
                    "Go back {n} days from {date}: what is the date?",
                    "What was the date {n} days before {date}?",
                ],
                &[
                    "Subtract {n} days from {date}. Which date is that?",
                    "Count back {n} days from {date}; what date do I land on?",
                    "Which date lies {n} days prior to {date}?",
                ],
                &[
                    "Take {n} days away from {date}. What's the date?",
                    "{n} days earlier than {date} was which date?",
                    "Rewind {n} days from {date}: which date is it?",
                    "Going backwards on the calendar, which date is {n} days from {date}?",
                ],
            ),
            &[("n", n.to_string()), ("date", spoken.clone())],
        )
    } else {
        fill(
            s.pick_phrasing(
                &[
                    "What date is {n} days after {date}?",
                    "Which date will it be {n} days from {date}?",
                    "If I start on {date}, what is the date {n} days later?",
                    "What is the date {n} days after {date}, and which weekday is it?",
                    "Add {n} days to {date}. What date do I get?",
                    "My project starts on {date} and lasts {n} days. On what date does it end?",
                    "Which day is {n} days past {date}?",
                    "What will the date be {n} days after {date}?",
                ],
                &[
                    "Tell me the date {n} days on from {date}.",
                    "Count {n} days forward from {date}. Which date is it?",
                    "A deadline is {n} days after {date}. When is it?",
                    "{n} days from {date} is which date?",
                    "Starting {date}, add {n} days and give me the resulting date.",
                ],
            ),
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

pub(super) fn calculate(
    s: &mut Session,
    a: f64,
    op: &str,
    b: f64,
    lead: &str,
) -> Result<f64, String> {
    let (sa, sb) = (fmt_num(a, 6), fmt_num(b, 6));
    let word = match op {
        "add" => "plus",
        "subtract" => "minus",
        "multiply" => "times",
        "divide" => "divided by",
        _ => "to the power of",
    };
    let vars = [
        ("lead", lead.into()),
        ("a", sa),
        ("op", op.into()),
        ("word", word.into()),
        ("b", sb),
    ];
    let drawn = fill(
        s.any(&[
            "{lead}I will use the calculator to compute {a} {word} {b}.",
            "{lead}The calculator tool can compute {a} {word} {b} with op {op}.",
            "{lead}I need {a} {word} {b}, so I call the calculator with op {op}.",
        ]),
        &vars,
    );
    let thought = s.worked(
        drawn,
        &[
            "{lead}{a} {word} {b} is the calculator's op {op}: a {a}, op {op}, b {b}.",
            "{lead}I call the calculator with a {a}, op \"{op}\" ({word}) and b {b}.",
            "{lead}The calculator's ops are add, subtract, multiply, divide and power; {word} is {op}, so a {a}, op {op}, b {b}.",
        ],
        &vars,
    );
    let args = json!({"a": json_num(a), "op": op, "b": json_num(b)});
    num(
        &ok(s.call(&thought, "calculator", args), "calculator")?,
        "result",
    )
}

/// A JSON number: whole values as integers (`7`, not `7.0`).
pub(super) fn json_num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

pub(super) fn calculator(s: &mut Session) -> Result<TaskOutcome, String> {
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

pub(super) fn unit_value(kind: &str, s: &mut Session) -> f64 {
    match kind {
        "temperature" => (s.rng.random_range(-20..=110)) as f64,
        _ => values::small(&mut s.rng, s.split, 1, 500) as f64,
    }
}

/// Digits an answer gives for a converted value: more for small values.
pub(super) fn unit_digits(x: f64) -> i32 {
    if x.abs() < 10.0 { 4 } else { 2 }
}

pub(super) fn units(s: &mut Session) -> Result<TaskOutcome, String> {
    let (kind, from, from_names) = s.any(UNITS);
    let same: Vec<_> = UNITS
        .iter()
        .filter(|u| u.0 == kind && u.1 != from)
        .collect();
    let (_, to, to_names) = *s.any(&same);
    let v = unit_value(kind, s);
    let (fname, tname) = (s.any(from_names).to_string(), s.any(to_names).to_string());
    let query = fill(
        s.pick_phrasing(
            &[
                "How many {to} are in {v} {from}?",
                "Convert {v} {from} to {to}.",
                "What is {v} {from} in {to}?",
                "{v} {from} is how many {to}?",
                "Please express {v} {from} in {to}.",
                "How much is {v} {from} in {to}?",
                "I measured {v} {from}. What is that in {to}?",
                "Change {v} {from} into {to}.",
            ],
            &[
                "What do {v} {from} come to in {to}?",
                "Convert this for me: {v} {from} to {to}.",
                "I have {v} {from}; tell me the amount in {to}.",
                "Can you give me {v} {from} in {to}?",
            ],
        ),
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

pub(super) fn country_lookup(s: &mut Session, name: &str, lead: &str) -> ToolAnswer {
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

pub(super) const COUNTRY_ASPECTS: &[(&str, &[&str])] = &[
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
pub(super) fn country_fact(
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

pub(super) fn country(s: &mut Session) -> Result<TaskOutcome, String> {
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
